//! `[placement]`: step kind → `cpu` (run by the router, from the events
//! queue) or `gpu` (sent to the gpu queue for `reelay work`). Kinds not
//! named keep their own hardware. Read once, at load, into a typed table;
//! a lookup is a map access.

use std::collections::BTreeMap;

use crate::invalid::Invalid;
use crate::tasks::{Hardware, StepKind};

/// The table as `reelay.toml` writes it.
pub type PlacementSpec = BTreeMap<String, String>;

/// The table, checked: every kind a [`StepKind`], every value a
/// [`Hardware`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placement {
    overrides: BTreeMap<StepKind, Hardware>,
}

impl Placement {
    /// Checks every entry of `spec` (from the file `object`); an error
    /// names `placement.KIND`.
    pub fn parse(object: &str, spec: &PlacementSpec) -> Result<Placement, Invalid> {
        let mut overrides = BTreeMap::new();
        for (kind_name, where_) in spec {
            let field = format!("placement.{kind_name}");
            let kind = StepKind::parse(kind_name).ok_or_else(|| {
                Invalid::new(
                    object,
                    &field,
                    format!("`{kind_name}` is not a step kind"),
                    format!("use one of: {}", StepKind::names()),
                )
            })?;
            let hardware = match where_.as_str() {
                "cpu" => Hardware::Cpu,
                "gpu" => Hardware::Gpu,
                _ => {
                    return Err(Invalid::new(
                        object,
                        field,
                        format!("`{where_}` is not a placement"),
                        "use \"cpu\" (the router runs it) or \"gpu\" (the gpu queue)",
                    ));
                }
            };
            overrides.insert(kind, hardware);
        }
        Ok(Placement { overrides })
    }

    /// Where `kind` runs: the table's word, else the kind's own hardware.
    pub fn hardware_for(&self, kind: StepKind) -> Hardware {
        self.overrides
            .get(&kind)
            .copied()
            .unwrap_or_else(|| kind.hardware())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(entries: &[(&str, &str)]) -> Result<Placement, Invalid> {
        Placement::parse(
            "reelay.toml",
            &entries
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn placement_overrides_a_kinds_hardware() {
        let p = parse(&[("extract", "gpu")]).unwrap();
        assert_eq!(p.hardware_for(StepKind::Extract), Hardware::Gpu);
        assert_eq!(p.hardware_for(StepKind::Compile), Hardware::Cpu);
        assert_eq!(p.hardware_for(StepKind::Frame), StepKind::Frame.hardware());
        let p = parse(&[("frame", "cpu")]).unwrap();
        assert_eq!(p.hardware_for(StepKind::Frame), Hardware::Cpu);
    }

    #[test]
    fn a_bad_entry_names_its_field_and_the_fix() {
        let e = parse(&[("extract", "tpu")]).unwrap_err();
        assert_eq!(
            (e.object.as_str(), e.field.as_str()),
            ("reelay.toml", "placement.extract")
        );
        assert!(e.problem.contains("`tpu`"), "{e}");
        assert!(e.fix.contains("\"gpu\""), "{e}");
        let e = parse(&[("upscal", "gpu")]).unwrap_err();
        assert_eq!(e.field, "placement.upscal");
        assert!(e.problem.contains("not a step kind"), "{e}");
        assert!(e.fix.contains("frame"), "{e}");
    }
}
