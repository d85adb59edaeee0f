//! reelay's own messages on the queues, told apart from bucket notifications
//! by their `type` field.

use serde::{Deserialize, Serialize};

use crate::events::ObjectCreated;
use crate::pipeline::task::Task;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum InternalMessage {
    /// A step to run (CPU steps on the events queue, GPU steps on the gpu queue).
    #[serde(rename = "reelay.task")]
    Task(Task),
    /// An upload seen by the local watcher or by `reconcile`.
    #[serde(rename = "reelay.upload")]
    Upload(ObjectCreated),
}

impl InternalMessage {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("messages serialise")
    }

    /// `Some` when `body` is one of reelay's own messages.
    pub fn parse(body: &str) -> Option<Result<InternalMessage, serde_json::Error>> {
        #[derive(Deserialize)]
        struct Probe {
            #[serde(rename = "type")]
            kind: Option<String>,
        }
        let probe: Probe = serde_json::from_str(body).ok()?;
        probe
            .kind
            .filter(|k| k.starts_with("reelay."))
            .map(|_| serde_json::from_str(body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::task::StepKind;

    #[test]
    fn tasks_round_trip_and_notifications_are_not_ours() {
        let task = Task::new(
            StepKind::Extract,
            "extract-0",
            None,
            vec!["a@b".into()],
            serde_json::json!({"start": 0.0}),
            |id| format!("work/{id}.mp4"),
        );
        let msg = InternalMessage::Task(task);
        assert_eq!(
            InternalMessage::parse(&msg.to_json()).unwrap().unwrap(),
            msg
        );
        assert!(InternalMessage::parse(r#"{"Records": []}"#).is_none());
        assert!(InternalMessage::parse("not json").is_none());
        assert!(
            InternalMessage::parse(r#"{"type": "reelay.task", "bogus": 1}"#)
                .unwrap()
                .is_err()
        );
    }
}
