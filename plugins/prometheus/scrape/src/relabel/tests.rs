use super::*;

fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
}

/// Applies the rules (JSON list) and returns the sorted result, or None if dropped.
fn run(rules: &str, input: &[(&str, &str)]) -> Option<Vec<(String, String)>> {
    let configs: Vec<RelabelConfig> = serde_json::from_str(rules).unwrap();
    let rules = compile(&configs).unwrap();
    let mut l = labels(input);
    if !process(&rules, &mut l) {
        return None;
    }
    l.sort();
    Some(l)
}

const SERIES: &[(&str, &str)] = &[("__name__", "http_requests_total"), ("code", "200"), ("method", "GET")];

#[test]
fn keep_and_drop_match_the_whole_value() {
    let keep = r#"[{"source_labels":["__name__"],"regex":"http_.*","action":"keep"}]"#;
    assert!(run(keep, SERIES).is_some());
    // Anchored: "http" alone does not match "http_requests_total".
    let keep = r#"[{"source_labels":["__name__"],"regex":"http","action":"keep"}]"#;
    assert!(run(keep, SERIES).is_none());
    let drop = r#"[{"source_labels":["method","code"],"regex":"GET;2..","action":"drop"}]"#;
    assert!(run(drop, SERIES).is_none());
    let drop = r#"[{"source_labels":["method","code"],"separator":"/","regex":"GET;2..","action":"drop"}]"#;
    assert!(run(drop, SERIES).is_some());
}

#[test]
fn replace_expands_groups_in_value_and_target() {
    let r = r#"[{"source_labels":["method","code"],"regex":"(.*);(\\d)(\\d+)","target_label":"class_${1}","replacement":"${2}xx"}]"#;
    assert_eq!(
        run(r, SERIES).unwrap(),
        labels(&[
            ("__name__", "http_requests_total"),
            ("class_GET", "2xx"),
            ("code", "200"),
            ("method", "GET")
        ])
    );
    // `$1x` names group "1x" (empty), as in Go: the label is set to "" = removed.
    let r = r#"[{"source_labels":["code"],"target_label":"code","replacement":"$1x"}]"#;
    assert_eq!(
        run(r, SERIES).unwrap(),
        labels(&[("__name__", "http_requests_total"), ("method", "GET")])
    );
    // No match: unchanged.
    let r = r#"[{"source_labels":["code"],"regex":"5..","target_label":"bad","replacement":"yes"}]"#;
    assert_eq!(run(r, SERIES).unwrap(), labels(SERIES));
    // Renaming the metric.
    let r = r#"[{"source_labels":["__name__"],"regex":"http_(.*)","target_label":"__name__","replacement":"web_$1"}]"#;
    assert_eq!(
        run(r, SERIES).unwrap()[0],
        ("__name__".into(), "web_requests_total".into())
    );
}

#[test]
fn labelmap_labeldrop_labelkeep() {
    let r = r#"[{"regex":"(code|method)","replacement":"http_$1","action":"labelmap"}]"#;
    assert_eq!(
        run(r, SERIES).unwrap(),
        labels(&[
            ("__name__", "http_requests_total"),
            ("code", "200"),
            ("http_code", "200"),
            ("http_method", "GET"),
            ("method", "GET")
        ])
    );
    let r = r#"[{"regex":"co.*","action":"labeldrop"}]"#;
    assert_eq!(
        run(r, SERIES).unwrap(),
        labels(&[("__name__", "http_requests_total"), ("method", "GET")])
    );
    let r = r#"[{"regex":"__name__|code","action":"labelkeep"}]"#;
    assert_eq!(
        run(r, SERIES).unwrap(),
        labels(&[("__name__", "http_requests_total"), ("code", "200")])
    );
}

#[test]
fn hashmod_lowercase_and_equality() {
    // md5("GET") = 7528035a93ee69cedb1dbddb2f0bfcc8; its last 8 bytes are
    // 0xdb1dbddb2f0bfcc8 = 15788984617715629256, which mod 10 is 6.
    let r = r#"[{"source_labels":["method"],"modulus":10,"target_label":"shard","action":"hashmod"}]"#;
    assert_eq!(run(r, SERIES).unwrap()[3], ("shard".into(), "6".into()));
    let r = r#"[{"source_labels":["method"],"target_label":"m","action":"lowercase"}]"#;
    assert_eq!(run(r, SERIES).unwrap()[2], ("m".into(), "get".into()));
    let r = r#"[{"source_labels":["code"],"target_label":"status","action":"keepequal"}]"#;
    assert!(run(r, SERIES).is_none());
    let r = r#"[{"source_labels":["code"],"target_label":"code","action":"dropequal"}]"#;
    assert!(run(r, SERIES).is_none());
}

#[test]
fn invalid_configs_say_what_prometheus_says() {
    let problems = |json: &str| {
        let configs: Vec<RelabelConfig> = serde_json::from_str(json).unwrap();
        compile(&configs).unwrap_err()
    };
    let p = problems(
        r#"[{"source_labels":["a"]},{"action":"labeldrop","regex":"x","target_label":"y"},{"regex":"(","target_label":"t"}]"#,
    );
    assert_eq!(
        p[..2],
        [
            "metric_relabel_configs[0]: relabel configuration for replace action requires 'target_label' value",
            "metric_relabel_configs[1]: labeldrop action requires only 'regex', and no other fields",
        ]
    );
    assert!(
        p[2].starts_with("metric_relabel_configs[2]: invalid regex \"(\": regex parse error:")
            && p[2].ends_with("error: unclosed group"),
        "{}",
        p[2]
    );
    assert_eq!(
        problems(r#"[{"target_label":"1bad"}]"#),
        ["metric_relabel_configs[0]: \"1bad\" is invalid 'target_label' for replace action"]
    );
    let e = serde_json::from_str::<RelabelConfig>(r#"{"action":"keep_if"}"#).unwrap_err();
    assert!(e.to_string().starts_with("unknown variant `keep_if`"), "{e}");
}

#[test]
fn relabel_targets() {
    assert!(is_relabel_target("abc"));
    assert!(is_relabel_target("${1}"));
    assert!(is_relabel_target("x_$1"));
    assert!(is_relabel_target("$name"));
    assert!(!is_relabel_target("1abc"));
    assert!(!is_relabel_target("a-b"));
    assert!(!is_relabel_target("${}"));
}
