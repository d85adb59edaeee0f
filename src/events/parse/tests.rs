use super::*;

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/events/",
            $name
        ))
    };
}

fn created(n: &Notification) -> &ObjectCreated {
    n.created()
        .unwrap_or_else(|| panic!("expected Created, got {n:?}"))
}

fn ignored(n: &Notification) -> &str {
    match n {
        Notification::Ignored { reason } => reason,
        other => panic!("expected Ignored, got {other:?}"),
    }
}

fn one(body: &str) -> Notification {
    let mut all = parse_message(body).unwrap();
    assert_eq!(all.len(), 1, "{all:?}");
    all.remove(0)
}

#[test]
fn s3_put_record_straight_to_sqs() {
    let n = one(fixture!("s3_put.json"));
    assert_eq!(
        created(&n),
        &ObjectCreated {
            bucket: "reelay-media".into(),
            key: "sources/match day (1).mp4".into(),
            size: Some(104_857_600),
            etag: Some("0f343b0931126a20f133d67c2b018a3b".into()),
            version: Some("096fKKXTRTtl3on89fVO.nfljtsv6qko".into()),
            sequencer: Some("0055AED6DCD90281E5".into()),
            time: Some("2025-03-04T10:11:12.345Z".into()),
        }
    );
}

#[test]
fn s3_message_with_several_records_keeps_order() {
    let all = parse_message(fixture!("s3_multiple_records.json")).unwrap();
    assert_eq!(all.len(), 3);
    let first = created(&all[0]);
    assert_eq!(first.key, "jobs/café + 100% highlights.json");
    assert_eq!(
        first.etag.as_deref(),
        Some("d41d8cd98f00b204e9800998ecf8427e-3"),
        "etag quotes are stripped"
    );
    assert_eq!(first.version, None);
    assert!(ignored(&all[1]).contains("ObjectRemoved:Delete"));
    let third = created(&all[2]);
    assert_eq!(third.key, "sources/野球/clip.mov");
    assert_eq!(third.size, None);
    assert_eq!(third.etag, None);
    assert_eq!(third.time, None);
}

#[test]
fn s3_test_event_is_ignored() {
    let reason = ignored(&one(fixture!("s3_test_event.json"))).to_string();
    assert!(reason.contains("s3:TestEvent"), "{reason}");
}

#[test]
fn sns_wrapped_s3_record() {
    let via_sns = one(fixture!("sns_s3_put.json"));
    let direct = one(fixture!("s3_put.json"));
    assert_eq!(via_sns, direct);
}

#[test]
fn sns_wrapped_test_event_is_ignored() {
    let body = sns_wrapping(fixture!("s3_test_event.json"));
    assert!(ignored(&one(&body)).contains("TestEvent"));
}

/// The SNS envelope of the fixture around `inner`.
fn sns_wrapping(inner: &str) -> String {
    let mut envelope: serde_json::Value =
        serde_json::from_str(fixture!("sns_s3_put.json")).unwrap();
    envelope["Message"] = inner.into();
    envelope.to_string()
}

#[test]
fn sns_envelope_without_its_fields_names_the_missing_one() {
    let mut envelope: serde_json::Value =
        serde_json::from_str(fixture!("sns_s3_put.json")).unwrap();
    envelope.as_object_mut().unwrap().remove("MessageId");
    let err = parse_message(&envelope.to_string()).unwrap_err();
    assert!(
        matches!(&err, EventError::Malformed { shape: "SNS", field, problem }
            if field == "MessageId" && problem == "is missing"),
        "{err:?}"
    );
}

#[test]
fn records_in_the_shape_moto_and_other_s3_compatible_servers_send() {
    // No userIdentity, requestParameters or responseElements: what moto
    // sends, and why S3 records are not read with aws_lambda_events' type.
    let body = r#"{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"us-east-1",
        "eventTime":"2026-01-01T00:00:00.000Z","eventName":"ObjectCreated:Put",
        "s3":{"s3SchemaVersion":"1.0","configurationId":"c","bucket":{"name":"b","arn":"arn:aws:s3:::b"},
        "object":{"key":"sources/a+b%2B.mp4","size":3,"eTag":"e"}}}]}"#;
    let n = one(body);
    let c = created(&n);
    assert_eq!((c.key.as_str(), c.size), ("sources/a b+.mp4", Some(3)));
    assert_eq!(c.time.as_deref(), Some("2026-01-01T00:00:00.000Z"));
}

#[test]
fn a_field_of_the_wrong_type_is_named_by_its_path() {
    let body = r#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"k"}}},"oops"]}"#;
    let err = parse_message(body).unwrap_err();
    assert!(
        matches!(&err, EventError::Malformed { field, .. } if field == "Records[1]"),
        "{err:?}"
    );
    let body = r#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":7},"object":{"key":"k"}}}]}"#;
    let err = parse_message(body).unwrap_err().to_string();
    assert!(err.contains("`Records[0].s3.bucket.name`"), "{err}");
    assert!(err.contains("expected a string"), "{err}");
    let body = r#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":""},"object":{"key":"k"}}}]}"#;
    let err = parse_message(body).unwrap_err().to_string();
    assert!(
        err.contains("`Records[0].s3.bucket.name` is empty"),
        "{err}"
    );
}

#[test]
fn eventbridge_time_keeps_its_fraction_and_a_bad_one_is_named() {
    let mut event: serde_json::Value =
        serde_json::from_str(fixture!("eventbridge_object_created.json")).unwrap();
    event["time"] = "2025-03-04T10:11:12.345Z".into();
    let n = one(&event.to_string());
    assert_eq!(
        created(&n).time.as_deref(),
        Some("2025-03-04T10:11:12.345Z")
    );
    event["time"] = "yesterday".into();
    let err = parse_message(&event.to_string()).unwrap_err();
    assert!(
        matches!(&err, EventError::Malformed { shape: "EventBridge", field, .. } if field == "time"),
        "{err:?}"
    );
}

#[test]
fn sns_subscription_confirmation_is_ignored() {
    let body = r#"{"Type":"SubscriptionConfirmation","TopicArn":"arn:aws:sns:us-east-1:1:t","Message":"You have chosen to subscribe","Token":"x"}"#;
    assert!(ignored(&one(body)).contains("SubscriptionConfirmation"));
}

#[test]
fn sns_message_that_is_not_json_is_an_error() {
    let body =
        r#"{"Type":"Notification","TopicArn":"arn:aws:sns:us-east-1:1:t","Message":"hello"}"#;
    let err = parse_message(body).unwrap_err();
    assert!(
        matches!(&err, EventError::Malformed { field, .. } if field == "Message"),
        "{err}"
    );
}

#[test]
fn eventbridge_object_created_key_is_not_decoded() {
    let n = one(fixture!("eventbridge_object_created.json"));
    assert_eq!(
        created(&n),
        &ObjectCreated {
            bucket: "reelay-media".into(),
            key: "sources/match day+final (2).mp4".into(),
            size: Some(5_242_880),
            etag: Some("b1946ac92492d2347c6235b4d2611184".into()),
            version: Some("IYV3p45BT0ac8hjHg1houSdS1a.Mro8e".into()),
            sequencer: Some("617f08299329d189".into()),
            time: Some("2025-03-04T10:11:12Z".into()),
        }
    );
}

#[test]
fn eventbridge_object_deleted_is_ignored() {
    let reason = ignored(&one(fixture!("eventbridge_object_deleted.json"))).to_string();
    assert!(reason.contains("Object Deleted"), "{reason}");
}

#[test]
fn eventbridge_from_another_service_is_ignored() {
    let body = r#"{"version":"0","detail-type":"EC2 Instance State-change Notification","source":"aws.ec2","detail":{}}"#;
    assert!(ignored(&one(body)).contains("aws.ec2"));
}

#[test]
fn r2_create_actions() {
    let put = one(fixture!("r2_put_object.json"));
    assert_eq!(
        created(&put),
        &ObjectCreated {
            bucket: "reelay-media".into(),
            key: "sources/match day+final.mp4".into(),
            size: Some(65536),
            etag: Some("c846ff7a18f28c2e262116d6e8719ef0".into()),
            version: None,
            sequencer: None,
            time: Some("2025-03-04T19:36:44.379Z".into()),
        }
    );
    let copy = one(fixture!("r2_copy_object.json"));
    assert_eq!(created(&copy).key, "jobs/export-1.json");
    assert_eq!(created(&copy).bucket, "reelay-media", "not the copy source");
    let multipart = one(fixture!("r2_complete_multipart.json"));
    assert_eq!(created(&multipart).key, "sources/café/long take.mov");
    assert_eq!(created(&multipart).size, Some(734_003_200));
}

#[test]
fn r2_deletes_are_ignored() {
    assert!(ignored(&one(fixture!("r2_delete_object.json"))).contains("DeleteObject"));
    assert!(ignored(&one(fixture!("r2_lifecycle_deletion.json"))).contains("LifecycleDeletion"));
}

#[test]
fn r2_unknown_action_is_ignored() {
    let body = r#"{"account":"a","action":"RenameObject","bucket":"b","object":{"key":"k"}}"#;
    assert!(ignored(&one(body)).contains("RenameObject"));
}

#[test]
fn r2_minimal_message_only_needs_bucket_and_key() {
    let body = r#"{"action":"PutObject","bucket":"b","object":{"key":"sources/a.mp4"}}"#;
    let n = one(body);
    let c = created(&n);
    assert_eq!((c.bucket.as_str(), c.key.as_str()), ("b", "sources/a.mp4"));
    assert_eq!(
        (c.size, c.etag.as_deref(), c.time.as_deref()),
        (None, None, None)
    );
}

#[test]
fn reelay_task_message_is_not_a_notification() {
    let err = parse_message(fixture!("reelay_task.json")).unwrap_err();
    assert!(err.is_internal(), "{err}");
    assert!(
        matches!(&err, EventError::NotANotification { kind } if kind == "reelay.task"),
        "{err:?}"
    );
}

#[test]
fn any_2x_event_version_is_accepted() {
    for v in ["2.0", "2.1", "2.2", "2.3", "2.10", "2"] {
        let body = s3_body(v, "ObjectCreated:Put", "sources/a.mp4");
        assert!(created(&one(&body)).key == "sources/a.mp4", "{v}");
    }
}

#[test]
fn other_event_versions_are_rejected_clearly() {
    for v in ["1.0", "3.0", "banana"] {
        let err = parse_message(&s3_body(v, "ObjectCreated:Put", "k")).unwrap_err();
        assert!(
            matches!(&err, EventError::UnsupportedVersion { version } if version == v),
            "{err:?}"
        );
        assert!(err.to_string().contains("2.x"), "{err}");
    }
}

#[test]
fn s3_non_create_events_are_ignored() {
    for name in [
        "ObjectRemoved:Delete",
        "ObjectRemoved:DeleteMarkerCreated",
        "ObjectRestore:Completed",
        "ObjectTagging:Put",
        "LifecycleExpiration:Delete",
        "s3:ReducedRedundancyLostObject",
    ] {
        let reason = ignored(&one(&s3_body("2.1", name, "k"))).to_string();
        assert!(reason.contains(name), "{reason}");
    }
}

#[test]
fn s3_compatible_servers_prefixing_event_names_with_s3_are_accepted() {
    let n = one(&s3_body("2.0", "s3:ObjectCreated:Put", "sources/a.mp4"));
    assert_eq!(created(&n).key, "sources/a.mp4");
}

#[test]
fn s3_size_may_be_a_string_or_absent_and_ids_may_be_null() {
    let body = r#"{"Records":[{"eventVersion":"2.1","eventName":"ObjectCreated:Post","s3":{"bucket":{"name":"b"},"object":{"key":"k","size":"42","versionId":null,"sequencer":null,"eTag":null}}}]}"#;
    let n = one(body);
    let c = created(&n);
    assert_eq!(c.size, Some(42));
    assert_eq!(
        (c.version.as_ref(), c.sequencer.as_ref(), c.etag.as_ref()),
        (None, None, None)
    );
}

#[test]
fn missing_required_fields_name_the_field() {
    let body = r#"{"Records":[{"eventVersion":"2.1","eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{}}}]}"#;
    let err = parse_message(body).unwrap_err();
    assert!(
        err.to_string().contains("Records[0].s3.object.key"),
        "{err}"
    );
    assert!(err.to_string().contains("missing"), "{err}");

    let body = r#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"k","size":-1}}}]}"#;
    let err = parse_message(body).unwrap_err();
    assert!(
        err.to_string().contains("Records[0].s3.object.size"),
        "{err}"
    );
}

#[test]
fn key_decoding() {
    let cases = [
        ("plain/key.mp4", "plain/key.mp4"),
        ("a+b", "a b"),
        ("a%2Bb", "a+b"),
        ("100%25", "100%"),
        ("caf%C3%A9", "café"),
        ("caf%c3%a9", "café"),
        ("%E9%87%8E%E7%90%83", "野球"),
        ("sp%20ace", "sp ace"),
        ("a%2Fb", "a/b"),
        ("-leading", "-leading"),
        ("..%2Fetc", "../etc"),
        ("", ""),
    ];
    for (raw, want) in cases {
        assert_eq!(decode_s3_key(raw).unwrap(), want, "{raw}");
    }
}

#[test]
fn invalid_utf8_key_is_a_clear_error_naming_the_key() {
    let err =
        parse_message(&s3_body("2.1", "ObjectCreated:Put", "sources/bad%FF.mp4")).unwrap_err();
    match &err {
        EventError::InvalidKey { key, reason } => {
            assert_eq!(key, "sources/bad%FF.mp4");
            assert!(reason.contains("UTF-8"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("sources/bad%FF.mp4"), "{err}");
}

#[test]
fn broken_percent_escapes_are_errors() {
    for raw in ["a%", "a%4", "a%zz", "%%"] {
        let err = decode_s3_key(raw).unwrap_err();
        assert!(
            matches!(&err, EventError::InvalidKey { key, .. } if key == raw),
            "{err:?}"
        );
    }
}

#[test]
fn unknown_shapes_and_non_json_are_errors() {
    assert!(matches!(
        parse_message("not json"),
        Err(EventError::NotJson { .. })
    ));
    assert!(matches!(
        parse_message("42"),
        Err(EventError::UnknownShape { .. })
    ));
    let err = parse_message(r#"{"hello":"world"}"#).unwrap_err();
    assert!(err.to_string().contains("hello"), "{err}");
    assert!(!err.is_internal());
    // `type` alone is not reelay's unless it is in reelay's namespace.
    assert!(matches!(
        parse_message(r#"{"type":"other"}"#),
        Err(EventError::UnknownShape { .. })
    ));
}

#[test]
fn a_forwarded_batch_is_flattened() {
    let body = format!(
        "[{},{}]",
        fixture!("r2_put_object.json"),
        fixture!("r2_delete_object.json")
    );
    let all = parse_message(&body).unwrap();
    assert_eq!(all.len(), 2);
    assert!(all[0].created().is_some());
    assert!(all[1].created().is_none());
}

#[test]
fn every_fixture_parses_or_is_internal() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/events");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let body = std::fs::read_to_string(&path).unwrap();
        match parse_message(&body) {
            Ok(v) => assert!(!v.is_empty(), "{}", path.display()),
            Err(e) => assert!(e.is_internal(), "{}: {e}", path.display()),
        }
        n += 1;
    }
    assert!(n >= 10, "fixtures missing from {}", dir.display());
}

fn s3_body(version: &str, name: &str, key: &str) -> String {
    serde_json::json!({
        "Records": [{
            "eventVersion": version,
            "eventSource": "aws:s3",
            "eventName": name,
            "s3": {
                "bucket": {"name": "b"},
                "object": {"key": key, "size": 1}
            }
        }]
    })
    .to_string()
}
