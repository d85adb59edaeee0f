//! Configuration: `reelay.toml`, with `REELAY_*` environment overrides,
//! validated at load. Every error names the file, the field and the fix.

pub mod aws;
pub mod bucket_keys;
pub mod bucket_url;
pub mod env;
pub mod placement;
pub mod prices;
pub mod rules;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::invalid::Invalid;
use crate::media::EncodeProfile;
use crate::tasks::{Hardware, StepKind};
use placement::{Placement, PlacementSpec};
use prices::PriceTable;
use rules::{Rule, RuleAction, RuleSpec};

/// `reelay.toml`. Every field is optional; the defaults describe the layout a
/// new user meets: videos under `sources/`, jobs at `jobs/*.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// `s3://bucket` for AWS/R2 mode (env `REELAY_BUCKET`).
    #[serde(default)]
    pub bucket: Option<String>,
    /// Events queue URL (env `REELAY_EVENTS_QUEUE_URL`).
    #[serde(default)]
    pub events_queue_url: Option<String>,
    /// GPU task queue URL (env `REELAY_GPU_QUEUE_URL`).
    #[serde(default)]
    pub gpu_queue_url: Option<String>,
    /// Steps run at once per process (env `REELAY_CONCURRENCY`).
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Inference device: `cpu`, `cuda` or `auto` (env `REELAY_DEVICE`).
    #[serde(default = "default_device")]
    pub device: String,
    #[serde(default)]
    pub layout: Layout,
    #[serde(default)]
    pub queue: QueueSettings,
    /// USD per second of device time, by device (env `REELAY_PRICES`).
    #[serde(default = "prices::default_prices")]
    pub prices: PriceTable,
    /// Output encoding profile shared by every step that encodes.
    #[serde(default)]
    pub output: EncodeProfile,
    #[serde(default = "default_rules")]
    pub rules: Vec<RuleSpec>,
    /// AWS-mode settings (S3 addressing, long poll, shutdown grace).
    #[serde(default)]
    pub aws: aws::AwsSettings,
    /// Step kind → `cpu` or `gpu`: which queue its tasks go to; read into
    /// [`Config::placement`].
    #[serde(default)]
    pub placement: PlacementSpec,
}

/// Where things live in the bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Layout {
    /// Prefixes users upload to; only these send notifications.
    pub uploads: Vec<String>,
    /// Intermediate artifacts, `<work>steps/<kind>-<task-id>.<ext>`.
    pub work: String,
    /// Failure records, `<failures><job>/<step>.json`.
    pub failures: String,
    /// Folders a job's `output` may be under (env `REELAY_OUTPUT_PREFIXES`,
    /// comma-separated). Never an upload or reserved prefix.
    pub outputs: Vec<String>,
}

impl Default for Layout {
    fn default() -> Self {
        Layout {
            uploads: vec!["sources/".into(), "jobs/".into()],
            work: "work/".into(),
            failures: "_reelay/failures/".into(),
            outputs: vec!["exports/".into()],
        }
    }
}

/// Queue behaviour, matching the SQS settings the deploy stack creates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueSettings {
    /// Seconds a received message stays hidden; heartbeats extend it.
    pub visibility_seconds: u64,
    /// Receives before a message goes to the dead-letter queue.
    pub max_receive_count: u32,
    /// Seconds before a failed attempt is retried (doubled per attempt).
    pub retry_seconds: u64,
}

impl Default for QueueSettings {
    fn default() -> Self {
        QueueSettings {
            visibility_seconds: 60,
            max_receive_count: 3,
            retry_seconds: 1,
        }
    }
}

fn default_concurrency() -> usize {
    2
}
fn default_device() -> String {
    "auto".into()
}
fn default_rules() -> Vec<RuleSpec> {
    vec![
        RuleSpec {
            name: Some("jobs".into()),
            pattern: "jobs/*.json".into(),
            kind: "job".into(),
            params: None,
            output: None,
        },
        // Every uploaded video gets its players detected.
        RuleSpec {
            name: Some("detect".into()),
            pattern: rules::DEFAULT_DETECT_MATCH.into(),
            kind: "detect".into(),
            params: None,
            output: Some(rules::DEFAULT_DETECTIONS_OUTPUT.into()),
        },
    ]
}

impl Default for ConfigFile {
    fn default() -> Self {
        toml::from_str("").expect("empty config takes every default")
    }
}

/// A configuration problem: the file (or `environment VAR`), the field,
/// what is wrong and the fix.
pub type ConfigError = Invalid;

/// A loaded, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it came from: a path, or `(defaults)`.
    pub source: String,
    pub file: ConfigFile,
    pub rules: Vec<Rule>,
    /// `[placement]`, checked.
    pub placement: Placement,
}

impl Config {
    /// The defaults, as if an empty `reelay.toml` had been given.
    pub fn defaults() -> Config {
        Config::from_file("(defaults)", ConfigFile::default()).expect("defaults are valid")
    }

    /// Loads `path`, else `$REELAY_CONFIG`, else `./reelay.toml` when present,
    /// else the defaults; then applies `REELAY_*` overrides and validates.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let chosen: Option<PathBuf> = match path {
            Some(p) => Some(p.to_path_buf()),
            None => match std::env::var_os(env::CONFIG) {
                Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
                _ => Some(PathBuf::from("reelay.toml")).filter(|p| p.exists()),
            },
        };
        let (source, text) = match &chosen {
            Some(p) => {
                let name = p.display().to_string();
                let text = std::fs::read_to_string(p).map_err(|e| {
                    Invalid::new(
                        &name,
                        "(file)",
                        format!("cannot read it: {e}"),
                        format!(
                            "create the file, or unset {} to use the defaults",
                            env::CONFIG
                        ),
                    )
                })?;
                (name, text)
            }
            None => ("(defaults)".to_string(), String::new()),
        };
        let mut file = Self::parse_toml(&source, &text)?;
        apply_env(&mut file, |name| std::env::var(name).ok())?;
        Config::from_file(&source, file)
    }

    /// Parses TOML text, naming the field of any error.
    pub fn parse_toml(source: &str, text: &str) -> Result<ConfigFile, ConfigError> {
        let de = toml::Deserializer::parse(text)
            .map_err(|e| Invalid::new(source, "(file)", e.message(), "make the file valid TOML"))?;
        serde_path_to_error::deserialize(de).map_err(|e| {
            let field = e.path().to_string();
            let message = e.into_inner().message().to_string();
            let fix = if message.starts_with("unknown field") {
                "remove the field or correct its spelling; `reelay check` lists what is accepted"
            } else {
                "give the field a value of the documented type"
            };
            Invalid::new(source, field, message, fix)
        })
    }

    /// Validates a parsed file, compiles its rules and reads its placement.
    pub fn from_file(source: &str, file: ConfigFile) -> Result<Config, ConfigError> {
        check_numbers(source, &file)?;
        check_layout(source, &file)?;
        aws::validate(
            source,
            &file.aws,
            file.bucket.as_deref(),
            [
                ("events_queue_url", file.events_queue_url.as_deref()),
                ("gpu_queue_url", file.gpu_queue_url.as_deref()),
            ],
        )?;
        let placement = Placement::parse(source, &file.placement)?;
        let rules = compile_rules(source, &file)?;
        Ok(Config {
            source: source.into(),
            file,
            rules,
            placement,
        })
    }

    /// The first rule matching `key`.
    pub fn rule_for(&self, key: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.matches(key))
    }

    /// Where tasks of `kind` run: its own hardware unless `[placement]` says otherwise.
    pub fn hardware_for(&self, kind: StepKind) -> Hardware {
        self.placement.hardware_for(kind)
    }

    /// Every prefix reelay writes outputs under (job outputs and rule
    /// outputs); the deploy stack scopes IAM writes to the same list.
    pub fn output_prefixes(&self) -> Vec<String> {
        crate::policy::outputs::output_prefixes(&self.file.layout, &self.file.rules)
    }

    /// Whether `key` is under a prefix users upload to.
    pub fn is_upload(&self, key: &str) -> bool {
        self.file
            .layout
            .uploads
            .iter()
            .any(|p| key.starts_with(p.as_str()))
    }
}

/// Concurrency, device, queue settings and prices: each in its range.
fn check_numbers(source: &str, file: &ConfigFile) -> Result<(), ConfigError> {
    let err = |field: &str, problem: String, fix: &str| Invalid::new(source, field, problem, fix);
    if file.concurrency == 0 || file.concurrency > 256 {
        return Err(err(
            "concurrency",
            format!("{} is out of range", file.concurrency),
            "use 1 to 256",
        ));
    }
    if !["cpu", "cuda", "auto"].contains(&file.device.as_str()) {
        return Err(err(
            "device",
            format!("`{}` is not a device", file.device),
            "use cpu, cuda or auto",
        ));
    }
    let q = &file.queue;
    if q.visibility_seconds < 5 || q.visibility_seconds > 43_200 {
        return Err(err(
            "queue.visibility_seconds",
            format!("{} is out of range", q.visibility_seconds),
            "use 5 to 43200 (SQS's range, with room for heartbeats)",
        ));
    }
    if q.max_receive_count == 0 || q.max_receive_count > 1000 {
        return Err(err(
            "queue.max_receive_count",
            format!("{} is out of range", q.max_receive_count),
            "use 1 to 1000",
        ));
    }
    for (name, price) in &file.prices {
        if !price.is_finite() || *price < 0.0 {
            return Err(err(
                &format!("prices.{name}"),
                format!("{price} is not a price"),
                "give USD per second, 0 or more",
            ));
        }
    }
    file.output.validate().map_err(|(field, message)| {
        Invalid::new(
            source,
            format!("output.{field}"),
            message,
            "use a value the message lists",
        )
    })
}

/// The layout's prefixes: folders, and reelay's own apart from the uploads,
/// so that its writes never trigger it again.
fn check_layout(source: &str, file: &ConfigFile) -> Result<(), ConfigError> {
    let layout = &file.layout;
    let own = [
        ("layout.work", &layout.work),
        ("layout.failures", &layout.failures),
    ];
    let uploads = layout.uploads.iter().map(|p| ("layout.uploads", p));
    for (field, prefix) in own.into_iter().chain(uploads) {
        if !prefix.ends_with('/') || crate::keys::validate(prefix.trim_end_matches('/')).is_err() {
            return Err(Invalid::new(
                source,
                field,
                format!("`{prefix}` is not a folder prefix"),
                "use a relative folder ending in `/`, such as `work/`",
            ));
        }
    }
    crate::policy::outputs::check_layout(layout)
        .map_err(|(field, problem, fix)| Invalid::new(source, field, problem, fix))?;
    for (field, prefix) in own {
        if layout
            .uploads
            .iter()
            .any(|u| prefix.starts_with(u.as_str()) || u.starts_with(prefix.as_str()))
        {
            return Err(Invalid::new(
                source,
                field,
                format!(
                    "`{prefix}` overlaps an upload prefix, so reelay's own writes would trigger it again"
                ),
                "keep work and failure prefixes apart from `layout.uploads`",
            ));
        }
    }
    Ok(())
}

/// Every rule, compiled; a rule's output is checked against the layout and
/// the other rules.
fn compile_rules(source: &str, file: &ConfigFile) -> Result<Vec<Rule>, ConfigError> {
    let mut rules = Vec::with_capacity(file.rules.len());
    for (i, spec) in file.rules.iter().enumerate() {
        rules.push(compile_rule(source, i, spec, &file.layout)?);
        if let Some(template) = spec.output.as_deref().filter(|_| spec.kind != "job") {
            crate::policy::outputs::check_rule_output(&file.layout, spec, template, &file.rules)
                .map_err(|(problem, fix)| {
                    Invalid::new(source, format!("rules[{i}].output"), problem, fix)
                })?;
        }
    }
    Ok(rules)
}

/// Rule `i`, compiled; an error names `rules[i].FIELD`.
fn compile_rule(
    source: &str,
    i: usize,
    spec: &RuleSpec,
    layout: &Layout,
) -> Result<Rule, ConfigError> {
    let bad = |field: &str, problem: String, fix: String| {
        Invalid::new(source, format!("rules[{i}].{field}"), problem, fix)
    };
    let name = spec.name.clone().unwrap_or_else(|| format!("rule-{i}"));
    let action = if spec.kind == "job" {
        if spec.output.is_some() || spec.params.is_some() {
            return Err(bad(
                "kind",
                "a `job` rule takes no params or output: the manifest names them".into(),
                "remove `params` and `output`".into(),
            ));
        }
        RuleAction::Job
    } else {
        let kind = StepKind::parse(&spec.kind).ok_or_else(|| {
            bad(
                "kind",
                format!("`{}` is not a step kind", spec.kind),
                format!("use `job` or one of: {}", StepKind::names()),
            )
        })?;
        if kind == StepKind::Compile {
            return Err(bad(
                "kind",
                "`compile` joins several clips, so it cannot run on one upload".into(),
                "describe compilations in a job manifest".into(),
            ));
        }
        let params = serde_json::to_value(spec.params.clone().unwrap_or_default())
            .expect("TOML tables are JSON");
        crate::tasks::validate_params(kind, &params).map_err(|e| {
            bad(
                "params",
                e,
                "fix the parameter as the message says".to_string(),
            )
        })?;
        let output = spec.output.clone().ok_or_else(|| {
            bad(
                "output",
                "a step rule needs an output key template".into(),
                "add e.g. output = \"previews/{path}\"".into(),
            )
        })?;
        let unknown = rules::unknown_placeholders(&output);
        if !unknown.is_empty() {
            return Err(bad(
                "output",
                format!("unknown placeholder(s) {{{}}}", unknown.join("}, {")),
                format!("use only {{{}}}", rules::PLACEHOLDERS.join("}, {")),
            ));
        }
        let sample = rules::render_template(&output, &rules::sample_key(&spec.pattern), "t");
        let own = Rule::new(name.clone(), &spec.pattern, RuleAction::Job)
            .map_err(|e| bad("match", e.to_string(), "write a valid glob".into()))?;
        if own.matches(&sample) {
            return Err(bad(
                "output",
                format!(
                    "outputs like `{sample}` match the rule's own pattern `{}`, so the rule would consume its own output (a loop)",
                    spec.pattern
                ),
                "write outputs to another folder, e.g. `previews/{path}`".into(),
            ));
        }
        if layout
            .uploads
            .iter()
            .any(|u| sample.starts_with(u.as_str()))
        {
            return Err(bad(
                "output",
                format!(
                    "outputs like `{sample}` land under an upload prefix, so each would trigger the pipeline again"
                ),
                "write outputs outside `layout.uploads`".into(),
            ));
        }
        if kind.hardware() == Hardware::Gpu {
            tracing::debug!(rule = %name, "rule runs on the GPU fleet");
        }
        RuleAction::Step {
            kind,
            params,
            output,
        }
    };
    Rule::new(name, &spec.pattern, action).map_err(|e| {
        bad(
            "match",
            e.to_string(),
            "write a valid glob such as `sources/**/*.mp4`".into(),
        )
    })
}

/// Applies `REELAY_*` overrides; `lookup` is the environment (a map in tests).
pub fn apply_env(
    file: &mut ConfigFile,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    let bad = |var: &str, problem: String, fix: &str| {
        Invalid::new(format!("environment {var}"), var, problem, fix)
    };
    if let Some(v) = lookup(env::BUCKET).filter(|v| !v.is_empty()) {
        file.bucket = Some(v);
    }
    if let Some(v) = lookup(env::EVENTS_QUEUE_URL).filter(|v| !v.is_empty()) {
        file.events_queue_url = Some(v);
    }
    if let Some(v) = lookup(env::GPU_QUEUE_URL).filter(|v| !v.is_empty()) {
        file.gpu_queue_url = Some(v);
    }
    if let Some(v) = lookup(env::CONCURRENCY).filter(|v| !v.is_empty()) {
        file.concurrency = v.parse().map_err(|_| {
            bad(
                env::CONCURRENCY,
                format!("`{v}` is not a number"),
                "set a whole number such as 2",
            )
        })?;
    }
    // The deploy stack passes its queue's values, so failure records count
    // tries (and say "dead-lettered") as the queue does.
    if let Some(v) = lookup(env::QUEUE_VISIBILITY_SECONDS).filter(|v| !v.is_empty()) {
        file.queue.visibility_seconds = v.parse().map_err(|_| {
            bad(
                env::QUEUE_VISIBILITY_SECONDS,
                format!("`{v}` is not a number of seconds"),
                "set the queue's VisibilityTimeout, e.g. 900",
            )
        })?;
    }
    if let Some(v) = lookup(env::QUEUE_MAX_RECEIVE_COUNT).filter(|v| !v.is_empty()) {
        file.queue.max_receive_count = v.parse().map_err(|_| {
            bad(
                env::QUEUE_MAX_RECEIVE_COUNT,
                format!("`{v}` is not a whole number"),
                "set the queue's redrive maxReceiveCount, e.g. 5",
            )
        })?;
    }
    if let Some(v) = lookup(env::DEVICE).filter(|v| !v.is_empty()) {
        file.device = v;
    }
    if let Some(v) = lookup(env::OUTPUT_PREFIXES).filter(|v| !v.trim().is_empty()) {
        file.layout.outputs = v
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| {
                if p.ends_with('/') {
                    p.to_string()
                } else {
                    format!("{p}/")
                }
            })
            .collect();
    }
    if let Some(v) = lookup(env::PRICES).filter(|v| !v.is_empty()) {
        for pair in v.split(',') {
            let (name, price) = pair.split_once('=').ok_or_else(|| {
                bad(
                    env::PRICES,
                    format!("`{pair}` is not NAME=PRICE"),
                    "write e.g. t4=0.000164,cpu=0.0000262",
                )
            })?;
            let price: f64 = price.trim().parse().map_err(|_| {
                bad(
                    env::PRICES,
                    format!("`{price}` is not a number"),
                    "write USD per second, e.g. 0.000164",
                )
            })?;
            file.prices.insert(name.trim().to_ascii_lowercase(), price);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Config, ConfigError> {
        Config::from_file("reelay.toml", Config::parse_toml("reelay.toml", text)?)
    }

    #[test]
    fn defaults_route_jobs() {
        let c = Config::defaults();
        assert!(matches!(
            c.rule_for("jobs/a.json").unwrap().action,
            RuleAction::Job
        ));
        match &c.rule_for("sources/a/b.mp4").unwrap().action {
            RuleAction::Step { kind, output, .. } => {
                assert_eq!(*kind, StepKind::Detect);
                assert_eq!(
                    rules::render_template(output, "sources/a/b.mp4", "t"),
                    "detections/a/b.mp4.json"
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(c.rule_for("sources/notes.txt").is_none());
        assert!(c.is_upload("sources/a.mp4"));
        assert!(!c.is_upload("work/a.mp4"));
    }

    #[test]
    fn unknown_field_names_file_and_field() {
        let e = load("concurrency = 2\n[queue]\nvisibilty_seconds = 3\n").unwrap_err();
        assert_eq!(e.object, "reelay.toml");
        assert_eq!(e.field, "queue.visibilty_seconds");
        assert!(e.problem.contains("visibilty_seconds"), "{e}");
    }

    #[test]
    fn a_rule_that_consumes_its_own_output_is_a_loop() {
        let e = load("[[rules]]\nmatch = \"previews/**/*.mp4\"\nkind = \"extract\"\nparams = { start = 0.0, end = 5.0 }\noutput = \"previews/{path}\"\n").unwrap_err();
        assert_eq!(e.field, "rules[0].output");
        assert!(e.problem.contains("loop"), "{e}");
    }

    #[test]
    fn step_rules_validate_their_params_and_placeholders() {
        let ok = load("[[rules]]\nmatch = \"sources/**/*.mp4\"\nkind = \"extract\"\nparams = { start = 0.0, end = 5.0 }\noutput = \"previews/{path}\"\n").unwrap();
        assert!(matches!(
            ok.rule_for("sources/a/b.mp4").unwrap().action,
            RuleAction::Step {
                kind: StepKind::Extract,
                ..
            }
        ));
        let e = load("[[rules]]\nmatch = \"sources/*.mp4\"\nkind = \"extract\"\nparams = { start = 0.0, end = 5.0 }\noutput = \"previews/{nam}\"\n").unwrap_err();
        assert_eq!(e.field, "rules[0].output");
        let e = load("[[rules]]\nmatch = \"sources/*.mp4\"\nkind = \"extract\"\nparams = { start = 0.0, ende = 5.0 }\noutput = \"previews/{name}\"\n").unwrap_err();
        assert_eq!(e.field, "rules[0].params");
        let e = load("[[rules]]\nmatch = \"sources/*.mp4\"\nkind = \"upscale\"\n").unwrap_err();
        assert_eq!(e.field, "rules[0].kind");
    }

    #[test]
    fn ranges_and_layout_are_checked() {
        assert_eq!(load("concurrency = 0").unwrap_err().field, "concurrency");
        assert_eq!(load("device = \"tpu\"").unwrap_err().field, "device");
        assert_eq!(
            load("[layout]\nwork = \"sources/work/\"")
                .unwrap_err()
                .field,
            "layout.work"
        );
        assert_eq!(load("[prices]\nt4 = -1.0").unwrap_err().field, "prices.t4");
    }

    #[test]
    fn environment_overrides() {
        let mut f = ConfigFile::default();
        let env = |k: &str| match k {
            "REELAY_BUCKET" => Some("s3://b".to_string()),
            "REELAY_CONCURRENCY" => Some("7".to_string()),
            "REELAY_PRICES" => Some("t4=0.5, h100=0.001".to_string()),
            _ => None,
        };
        apply_env(&mut f, env).unwrap();
        assert_eq!(f.bucket.as_deref(), Some("s3://b"));
        assert_eq!(f.concurrency, 7);
        assert_eq!(f.prices["t4"], 0.5);
        assert_eq!(f.prices["h100"], 0.001);
        let e = apply_env(&mut f, |k| {
            (k == "REELAY_CONCURRENCY").then(|| "many".to_string())
        })
        .unwrap_err();
        assert_eq!(e.field, "REELAY_CONCURRENCY");
    }

    /// Rules `reelay check` called valid, though their outputs overwrite
    /// the upload, loop, leave the bucket or land on reelay's own records.
    #[test]
    fn rules_are_checked_by_every_output_they_can_produce() {
        for template in [
            "{dir}/{name}",
            "{dir}/{dir}/{name}",
            "../{path}",
            "_reelay/claims/{task}.json",
            "jobs/{stem}.json",
            "sources/x/{name}",
        ] {
            let e = load(&format!(
                "[[rules]]\nmatch = \"sources/**/*.mp4\"\nkind = \"extract\"\nparams = {{ start = 0.0, end = 5.0 }}\noutput = \"{template}\"\n"
            ))
            .unwrap_err();
            assert_eq!(e.field, "rules[0].output", "{template}: {e}");
            assert!(!e.fix.is_empty(), "{e}");
        }
        // An output another rule picks up: a job rule would run it as a job.
        let e = load("[[rules]]\nmatch = \"in/*.json\"\nkind = \"job\"\n[[rules]]\nmatch = \"sources/*.mp4\"\nkind = \"detect\"\noutput = \"in/{name}.json\"\n[layout]\nuploads = [\"sources/\", \"in/\"]\n").unwrap_err();
        assert_eq!(e.field, "rules[1].output", "{e}");
        let ok = load("[[rules]]\nmatch = \"sources/**/*.mp4\"\nkind = \"extract\"\nparams = { start = 0.0, end = 5.0 }\noutput = \"previews/{dir}/{name}\"\n").unwrap();
        assert_eq!(ok.output_prefixes(), ["exports/", "previews/"]);
    }

    /// Settings `reelay check` accepted though every job would fail later.
    #[test]
    fn settings_that_fail_every_job_are_refused_by_check() {
        let e = load("[layout]\nwork = \".reelay/\"").unwrap_err();
        assert_eq!(e.field, "layout.work");
        assert!(e.problem.contains(".reelay/"), "{e}");
        for fmt in ["rgb24", "gray", "yuv420p10le"] {
            let e = load(&format!("[output]\npix_fmt = \"{fmt}\"")).unwrap_err();
            assert_eq!(e.field, "output.pix_fmt", "{fmt}");
            assert!(e.problem.contains("yuv420p"), "{e}");
        }
        load("[output]\npix_fmt = \"yuv444p\"").unwrap();
        for outputs in [
            "[\"sources/\"]",
            "[\"_reelay/x/\"]",
            "[\"work/\"]",
            "[]",
            "[\"x\"]",
        ] {
            let e = load(&format!("[layout]\noutputs = {outputs}")).unwrap_err();
            assert_eq!(e.field, "layout.outputs", "{outputs}: {e}");
        }
        let mut f = ConfigFile::default();
        apply_env(&mut f, |k| {
            (k == "REELAY_OUTPUT_PREFIXES").then(|| "exports/, clips".to_string())
        })
        .unwrap();
        assert_eq!(f.layout.outputs, ["exports/", "clips/"]);
        let mut f = ConfigFile::default();
        apply_env(&mut f, |k| {
            (k == "REELAY_OUTPUT_PREFIXES").then(|| "jobs/".to_string())
        })
        .unwrap();
        assert_eq!(
            Config::from_file("env", f).unwrap_err().field,
            "layout.outputs"
        );
    }

    #[test]
    fn the_stacks_queue_values_override_the_defaults_and_are_range_checked() {
        let mut f = ConfigFile::default();
        assert_eq!(
            (f.queue.visibility_seconds, f.queue.max_receive_count),
            (60, 3)
        );
        apply_env(&mut f, |k| match k {
            "REELAY_QUEUE_VISIBILITY_SECONDS" => Some("3600".into()),
            "REELAY_QUEUE_MAX_RECEIVE_COUNT" => Some("5".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(
            (f.queue.visibility_seconds, f.queue.max_receive_count),
            (3600, 5)
        );
        let e = apply_env(&mut f, |k| {
            (k == "REELAY_QUEUE_MAX_RECEIVE_COUNT").then(|| "five".into())
        })
        .unwrap_err();
        assert_eq!(e.field, "REELAY_QUEUE_MAX_RECEIVE_COUNT");
        let mut far = ConfigFile::default();
        apply_env(&mut far, |k| {
            (k == "REELAY_QUEUE_VISIBILITY_SECONDS").then(|| "99999".into())
        })
        .unwrap();
        let e = Config::from_file("(env)", far).unwrap_err();
        assert_eq!(e.field, "queue.visibility_seconds");
    }
}
