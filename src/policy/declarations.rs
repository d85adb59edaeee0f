//! A job's output, checked at planning and declared once: under the output
//! prefixes ([`super::outputs`]), and never another live job's output.

use serde::{Deserialize, Serialize};

use super::outputs::{DECLARED_PREFIX, forbidden_prefixes};
use crate::config::Layout;
use crate::pipeline::manifest::{JobManifest, ManifestError};
use crate::ports::store::{Metadata, ObjectStore, PutCondition, PutOutcome, StoreError};

/// Checks a job's `output` against the layout, at planning time.
pub fn check_job_output(
    layout: &Layout,
    manifest_key: &str,
    manifest: &JobManifest,
) -> Result<(), ManifestError> {
    let refuse = |problem: String, fix: String| ManifestError {
        object: manifest_key.into(),
        field: "output".into(),
        problem,
        fix,
    };
    let output = &manifest.output;
    if let Some((prefix, what)) = forbidden_prefixes(layout)
        .into_iter()
        .find(|(p, _)| output.starts_with(p.as_str()))
    {
        return Err(refuse(
            format!(
                "`{output}` is under `{prefix}`, {what}; reelay never writes a job's export there"
            ),
            format!("write the export under {}", listed(&layout.outputs)),
        ));
    }
    if !layout
        .outputs
        .iter()
        .any(|p| output.starts_with(p.as_str()))
    {
        return Err(refuse(
            format!(
                "`{output}` is not under an output prefix ({})",
                listed(&layout.outputs)
            ),
            format!(
                "write the export under {}, or add its folder to `[layout] outputs` in reelay.toml (env REELAY_OUTPUT_PREFIXES)",
                listed(&layout.outputs)
            ),
        ));
    }
    Ok(())
}

fn listed(prefixes: &[String]) -> String {
    prefixes
        .iter()
        .map(|p| format!("`{p}`"))
        .collect::<Vec<_>>()
        .join(" or ")
}

/// Who declared an output: written once per output key, so a second job
/// naming the same output is refused instead of taking turns overwriting it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Declaration {
    manifest: String,
    job: String,
}

/// The declaration record of `output`.
pub fn declaration_key(output: &str) -> String {
    use sha2::{Digest, Sha256};
    format!(
        "{DECLARED_PREFIX}{}.json",
        hex::encode(&Sha256::digest(output.as_bytes())[..16])
    )
}

/// Records that `manifest_key` (job `job_id`) writes `output`, unless another
/// live manifest declared it first; then refuses, naming that manifest. A
/// declaration whose manifest is gone or now names another output is taken
/// over. The same job under two names (same id) shares its output.
pub async fn declare_output(
    store: &dyn ObjectStore,
    manifest_key: &str,
    job_id: &str,
    output: &str,
) -> Result<Result<(), ManifestError>, StoreError> {
    let key = declaration_key(output);
    let ours = Declaration {
        manifest: manifest_key.into(),
        job: job_id.into(),
    };
    let body = serde_json::to_vec(&ours).expect("declarations serialise");
    let none = Metadata::new();
    let put = |condition| store.put_bytes(&key, &body, "application/json", &none, condition);
    for _ in 0..3 {
        if let PutOutcome::Written(_) = put(PutCondition::IfAbsent).await? {
            return Ok(Ok(()));
        }
        let held = match store.get_bytes(&key).await {
            Ok((bytes, _)) => serde_json::from_slice::<Declaration>(&bytes).ok(),
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(e),
        };
        match held {
            Some(d) if d.manifest == manifest_key || d.job == job_id => return Ok(Ok(())),
            Some(d) if still_declares(store, &d.manifest, output).await => {
                return Ok(Err(ManifestError {
                    object: manifest_key.into(),
                    field: "output".into(),
                    problem: format!(
                        "`{output}` is already the output of job `{}`; two jobs writing one key would overwrite each other",
                        d.manifest
                    ),
                    fix: format!(
                        "give this job another output, or delete `{}` first",
                        d.manifest
                    ),
                }));
            }
            _ => {
                put(PutCondition::Overwrite).await?;
                return Ok(Ok(()));
            }
        }
    }
    Ok(Ok(()))
}

/// Whether the manifest at `manifest_key` is still a valid job writing `output`.
async fn still_declares(store: &dyn ObjectStore, manifest_key: &str, output: &str) -> bool {
    crate::pipeline::manifest::read(store, manifest_key)
        .await
        .is_ok_and(|read| read.is_ok_and(|(m, _)| m.output == output))
}
