//! Rules: an uploaded key's glob → a step kind → parameters → an output key
//! template. The `job` kind reads the object as a job manifest.

use globset::{GlobBuilder, GlobMatcher};
use serde::{Deserialize, Serialize};

use crate::tasks::StepKind;

/// A rule as written in `reelay.toml` (`[[rules]]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// Shown in logs and failure records; defaults to `rule-N`.
    #[serde(default)]
    pub name: Option<String>,
    /// Glob over keys: `*` stays within a folder, `**` crosses folders.
    #[serde(rename = "match")]
    pub pattern: String,
    /// `job`, or a single-input step kind such as `extract`.
    pub kind: String,
    /// Parameters of the step kind.
    #[serde(default)]
    pub params: Option<toml::Table>,
    /// Output key template. Placeholders: {key} {path} {dir} {name} {stem} {ext} {task}.
    #[serde(default)]
    pub output: Option<String>,
}

/// What a matching key turns into.
#[derive(Debug, Clone, PartialEq)]
pub enum RuleAction {
    /// The object is a job manifest.
    Job,
    /// One step with the object as its only input.
    Step {
        kind: StepKind,
        params: serde_json::Value,
        output: String,
    },
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub pattern: String,
    matcher: GlobMatcher,
    pub action: RuleAction,
}

impl Rule {
    pub fn new(name: String, pattern: &str, action: RuleAction) -> Result<Rule, globset::Error> {
        let matcher = GlobBuilder::new(pattern)
            .literal_separator(true)
            .build()?
            .compile_matcher();
        Ok(Rule {
            name,
            pattern: pattern.to_string(),
            matcher,
            action,
        })
    }

    pub fn matches(&self, key: &str) -> bool {
        self.matcher.is_match(key)
    }
}

/// Where the default `detect` rule writes: `sources/a/b.mp4` →
/// `detections/a/b.mp4.json`. Jobs that track players use the same key for
/// their source, so the rule's task and the job's are one task.
pub const DEFAULT_DETECTIONS_OUTPUT: &str = "detections/{path}.json";
/// Uploads the default `detect` rule runs on: videos under `sources/`.
pub const DEFAULT_DETECT_MATCH: &str =
    "sources/**/*.{mp4,MP4,mov,MOV,m4v,M4V,mkv,MKV,webm,WEBM,avi,AVI}";

pub const PLACEHOLDERS: &[&str] = &["key", "path", "dir", "name", "stem", "ext", "task"];

/// Fills an output template for `key`. `{path}` is the key without its first
/// folder (`sources/a/b.mp4` → `a/b.mp4`), so outputs mirror the upload tree.
pub fn render_template(template: &str, key: &str, task_id: &str) -> String {
    let path = key.split_once('/').map_or(key, |(_, rest)| rest);
    let name = key.rsplit('/').next().unwrap_or(key);
    let (stem, ext) = match name.rsplit_once('.') {
        Some((s, e)) if !s.is_empty() => (s, e),
        _ => (name, ""),
    };
    let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
    let mut out = template.to_string();
    for (placeholder, value) in [
        ("{key}", key),
        ("{path}", path),
        ("{dir}", dir),
        ("{name}", name),
        ("{stem}", stem),
        ("{ext}", ext),
        ("{task}", task_id),
    ] {
        out = out.replace(placeholder, value);
    }
    // An empty {dir} must not leave a `//` or a leading `/`.
    while out.contains("//") {
        out = out.replace("//", "/");
    }
    out.trim_start_matches('/').to_string()
}

/// Placeholders in `template` that reelay does not know.
pub fn unknown_placeholders(template: &str) -> Vec<String> {
    let mut unknown = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close) => {
                let name = &after[..close];
                if !PLACEHOLDERS.contains(&name) {
                    unknown.push(name.to_string());
                }
                rest = &after[close + 1..];
            }
            None => {
                unknown.push(after.to_string());
                break;
            }
        }
    }
    unknown
}

/// A key that matches `pattern`, for loop checks: `**` → `a/b`, `*` → `x`.
pub fn sample_key(pattern: &str) -> String {
    pattern.replace("**", "a/b").replace(['*', '?'], "x")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_fill_every_placeholder() {
        let key = "sources/team a/match.final.mp4";
        assert_eq!(
            render_template("detections/{path}.json", key, "t"),
            "detections/team a/match.final.mp4.json"
        );
        assert_eq!(
            render_template("previews/{dir}/{stem}-{task}.{ext}", key, "abc"),
            "previews/team a/match.final-abc.mp4"
        );
        assert_eq!(
            render_template("previews/{dir}/{name}", "sources/a.mp4", "t"),
            "previews/a.mp4"
        );
        assert_eq!(
            render_template("{key}.json", "sources/a.mp4", "t"),
            "sources/a.mp4.json"
        );
    }

    #[test]
    fn unknown_placeholders_are_reported() {
        assert_eq!(unknown_placeholders("x/{stem}/{nme}.mp4"), ["nme"]);
        assert!(unknown_placeholders("x/{stem}.mp4").is_empty());
    }

    #[test]
    fn globs_keep_star_within_a_folder() {
        let rule = Rule::new("r".into(), "jobs/*.json", RuleAction::Job).unwrap();
        assert!(rule.matches("jobs/a.json"));
        assert!(!rule.matches("jobs/sub/a.json"));
        let deep = Rule::new("r".into(), "sources/**/*.mp4", RuleAction::Job).unwrap();
        assert!(deep.matches("sources/a/b/c.mp4"));
        assert!(deep.matches("sources/c.mp4"));
    }
}
