//! Which keys reelay may write as outputs. Uploads, manifests and reelay's
//! own records are never outputs; job exports go under the configured output
//! prefixes (`[layout] outputs`, env `REELAY_OUTPUT_PREFIXES`); a step rule
//! writes under the literal folder its output template starts with. The same
//! list ([`output_prefixes`]) scopes the deploy stack's IAM writes.

use globset::GlobBuilder;

use crate::config::Layout;
use crate::config::rules::{RuleSpec, render_template};
use crate::keys::{self, LOCAL_RESERVED};

/// reelay's own records in any bucket (claims, failures, input lists).
pub const RECORDS_PREFIX: &str = "_reelay/";
/// Where each declared job output names the manifest that declared it.
pub const DECLARED_PREFIX: &str = "_reelay/outputs/";

/// A refusal: what is wrong and how to fix it (the caller names the object
/// and the field).
pub type Refusal = (String, String);

/// Prefixes no output may be under: uploads, reelay's records and work.
pub fn forbidden_prefixes(layout: &Layout) -> Vec<(String, &'static str)> {
    let mut out = vec![
        (RECORDS_PREFIX.to_string(), "reelay's own records"),
        (format!("{LOCAL_RESERVED}/"), "reelay's local bookkeeping"),
        (
            layout.work.clone(),
            "reelay's intermediate work (`layout.work`)",
        ),
        (
            layout.failures.clone(),
            "failure records (`layout.failures`)",
        ),
    ];
    out.extend(
        layout
            .uploads
            .iter()
            .map(|u| (u.clone(), "an upload prefix (`layout.uploads`)")),
    );
    out
}

fn overlaps(a: &str, b: &str) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// Checks one configured output prefix (`layout.outputs`).
pub fn check_output_prefix(layout: &Layout, prefix: &str) -> Result<(), Refusal> {
    if !prefix.ends_with('/') || keys::validate(prefix.trim_end_matches('/')).is_err() {
        return Err((
            format!("`{prefix}` is not a folder prefix"),
            "use a relative folder ending in `/`, such as `exports/`".into(),
        ));
    }
    if let Some((other, what)) = forbidden_prefixes(layout)
        .into_iter()
        .find(|(f, _)| overlaps(prefix, f))
    {
        return Err((
            format!("`{prefix}` overlaps `{other}`, {what}, so outputs could overwrite it"),
            "give outputs their own folder, such as `exports/`".into(),
        ));
    }
    Ok(())
}

/// Checks the layout's own prefixes against reelay's reserved ones:
/// `(field, problem, fix)`.
pub fn check_layout(layout: &Layout) -> Result<(), (String, String, String)> {
    let local = format!("{LOCAL_RESERVED}/");
    for (field, prefix) in [
        ("layout.work", &layout.work),
        ("layout.failures", &layout.failures),
    ] {
        if overlaps(prefix, &local) {
            return Err((
                field.into(),
                format!(
                    "`{prefix}` overlaps `{local}`, which the local store keeps for its own records and refuses to write"
                ),
                "use another folder, such as `work/` or `_reelay/failures/`".into(),
            ));
        }
    }
    if layout.outputs.is_empty() {
        return Err((
            "layout.outputs".into(),
            "no output prefix is configured, so no job could write its export".into(),
            "set e.g. outputs = [\"exports/\"]".into(),
        ));
    }
    for prefix in &layout.outputs {
        check_output_prefix(layout, prefix)
            .map_err(|(problem, fix)| ("layout.outputs".to_string(), problem, fix))?;
    }
    Ok(())
}

/// The literal folder an output template starts with (`previews/{path}` →
/// `previews/`); every key the template renders begins with it.
pub fn template_prefix(template: &str) -> Option<&str> {
    let literal = &template[..template.find('{').unwrap_or(template.len())];
    literal.rfind('/').map(|i| &template[..=i])
}

/// Checks a step rule's output template by what it can produce: a literal
/// output folder outside every forbidden prefix, and no rendered sample key
/// matching any rule's pattern (its own: a loop; a job rule: the output
/// would run as a job).
pub fn check_rule_output(
    layout: &Layout,
    spec: &RuleSpec,
    template: &str,
    all_rules: &[RuleSpec],
) -> Result<(), Refusal> {
    let prefix = template_prefix(template).ok_or_else(|| {
        (
            format!(
                "`{template}` does not start with a fixed folder, so its outputs can land anywhere (next to or over the upload, under reserved prefixes)"
            ),
            "start the template with an output folder, e.g. `previews/{path}`".to_string(),
        )
    })?;
    check_output_prefix(layout, prefix).map_err(|(problem, fix)| {
        (
            format!("outputs under {problem}"),
            format!("{fix}, e.g. `previews/{{path}}`"),
        )
    })?;
    for sample in sample_keys(&spec.pattern) {
        let out = render_template(template, &sample, "task");
        if let Err(e) = keys::validate(&out) {
            return Err((
                format!(
                    "for an upload like `{sample}` the output would be `{out}`: {}",
                    e.reason
                ),
                "use placeholders that always give a valid key, e.g. `previews/{path}`".into(),
            ));
        }
        if out == sample {
            return Err((
                format!("for an upload like `{sample}` the output is the upload itself"),
                "write outputs to their own folder, e.g. `previews/{path}`".into(),
            ));
        }
        for other in all_rules {
            let Ok(glob) = GlobBuilder::new(&other.pattern)
                .literal_separator(true)
                .build()
            else {
                continue;
            };
            if glob.compile_matcher().is_match(&out) {
                let what = if std::ptr::eq(other, spec) {
                    "the rule's own pattern, so the rule would consume its own output (a loop)"
                        .to_string()
                } else {
                    format!(
                        "the pattern `{}` of rule `{}`, so every output would trigger it",
                        other.pattern,
                        other.name.as_deref().unwrap_or("?")
                    )
                };
                return Err((
                    format!("outputs like `{out}` (from `{sample}`) match {what}"),
                    "write outputs to another folder, e.g. `previews/{path}`".into(),
                ));
            }
        }
    }
    Ok(())
}

/// Keys a glob matches, chosen to exercise every placeholder: `**` as no
/// folder, one and two folders; each `{a,b}` alternative; `*`/`?` as `x`.
pub fn sample_keys(pattern: &str) -> Vec<String> {
    let mut out = Vec::new();
    for deep in ["", "a", "a/b"] {
        for alternative in expand_braces(pattern) {
            let mut key = alternative.replace("**", deep);
            while key.contains("//") {
                key = key.replace("//", "/");
            }
            let key = key.trim_matches('/').replace(['*', '?'], "x");
            let key = strip_classes(&key);
            if !key.is_empty() && !out.contains(&key) {
                out.push(key);
            }
        }
    }
    out
}

/// `a.{x,y}` → `a.x`, `a.y` (the first group only: enough for samples).
fn expand_braces(pattern: &str) -> Vec<String> {
    match (pattern.find('{'), pattern.find('}')) {
        (Some(open), Some(close)) if open < close => pattern[open + 1..close]
            .split(',')
            .take(4)
            .map(|alt| format!("{}{alt}{}", &pattern[..open], &pattern[close + 1..]))
            .collect(),
        _ => vec![pattern.to_string()],
    }
}

/// `[abc]` → `a`.
fn strip_classes(key: &str) -> String {
    let mut out = String::new();
    let mut chars = key.chars();
    while let Some(c) = chars.next() {
        if c == '[' {
            let class: String = chars.by_ref().take_while(|&c| c != ']').collect();
            out.push(
                class
                    .chars()
                    .find(|c| *c != '!' && *c != '^')
                    .unwrap_or('x'),
            );
        } else {
            out.push(c);
        }
    }
    out
}

/// Every prefix reelay writes outputs under: the configured job output
/// prefixes and each step rule's output folder. The deploy stack scopes its
/// IAM writes to the same list.
pub fn output_prefixes(layout: &Layout, rules: &[RuleSpec]) -> Vec<String> {
    let mut out = layout.outputs.clone();
    for rule in rules {
        if let Some(prefix) = rule.output.as_deref().and_then(template_prefix)
            && !out.iter().any(|p| p == prefix)
        {
            out.push(prefix.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(pattern: &str, output: &str) -> RuleSpec {
        RuleSpec {
            name: Some("r".into()),
            pattern: pattern.into(),
            kind: "extract".into(),
            params: None,
            output: Some(output.into()),
        }
    }

    /// The templates the adversarial run found `reelay check` accepting.
    #[test]
    fn templates_are_judged_by_every_key_they_can_produce() {
        let layout = Layout::default();
        for template in [
            "{dir}/{name}",
            "{dir}/{dir}/{name}",
            "../{path}",
            "_reelay/claims/{task}.json",
            "sources/{name}",
            "jobs/{stem}.json",
            "work/{name}",
            ".reelay/meta/{name}",
            "{key}",
        ] {
            let spec = rule("sources/**/*.mp4", template);
            let e = check_rule_output(&layout, &spec, template, std::slice::from_ref(&spec));
            assert!(e.is_err(), "{template} should be refused");
        }
        let spec = rule("sources/**/*.mp4", "previews/{path}");
        check_rule_output(
            &layout,
            &spec,
            "previews/{path}",
            std::slice::from_ref(&spec),
        )
        .unwrap();
        // A loop only some keys show: `**` as two folders.
        let spec = rule("out/**/b/*.mp4", "out/a/b/{name}");
        let e = check_rule_output(
            &layout,
            &spec,
            "out/a/b/{name}",
            std::slice::from_ref(&spec),
        )
        .unwrap_err();
        assert!(e.0.contains("loop"), "{e:?}");
    }

    #[test]
    fn samples_cover_every_depth_and_alternative() {
        let s = sample_keys("sources/**/*.{mp4,mov}");
        assert!(s.contains(&"sources/x.mp4".to_string()), "{s:?}");
        assert!(s.contains(&"sources/a/b/x.mov".to_string()), "{s:?}");
    }

    #[test]
    fn prefixes_of_templates() {
        assert_eq!(template_prefix("previews/{dir}/{name}"), Some("previews/"));
        assert_eq!(template_prefix("a/b/{name}.json"), Some("a/b/"));
        assert_eq!(template_prefix("{dir}/{name}"), None);
        assert_eq!(template_prefix("x{name}"), None);
    }
}
