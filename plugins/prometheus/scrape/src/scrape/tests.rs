use super::*;
use crate::relabel::{RelabelConfig, compile};
use sonde_plugin_sdk::NativeRegistry;
use sonde_plugin_sdk::bindings::sonde::plugin::types::Batch;

fn scraper(relabel: &str, honor_timestamps: bool) -> Scraper {
    let configs: Vec<RelabelConfig> = serde_json::from_str(relabel).unwrap();
    Scraper::new(compile(&configs).unwrap(), honor_timestamps)
}

/// `name{labels}` of each series a batch defines, with its family's name and kind.
fn defined(b: &Batch) -> Vec<String> {
    b.series
        .iter()
        .map(|s| {
            let f = b.families.iter().find(|f| f.id == s.family);
            let fam = f.map_or("?".to_string(), |f| {
                format!(
                    "{}:{}",
                    f.name,
                    format!("{:?}", f.kind).trim_start_matches("MetricKind::")
                )
            });
            let labels: Vec<String> = s.labels.iter().map(|l| format!("{}={:?}", l.name, l.value)).collect();
            format!("{fam} {}{{{}}}", s.name, labels.join(","))
        })
        .collect()
}

const DJANGO: &str = r#"# HELP django_http_requests_latency_seconds_by_view_method Histogram of request processing time labelled by view.
# TYPE django_http_requests_latency_seconds_by_view_method histogram
django_http_requests_latency_seconds_by_view_method_bucket{le="0.01",method="GET",view="ok"} 7.0
django_http_requests_latency_seconds_by_view_method_bucket{le="+Inf",method="GET",view="ok"} 7.0
django_http_requests_latency_seconds_by_view_method_count{method="GET",view="ok"} 7.0
django_http_requests_latency_seconds_by_view_method_sum{method="GET",view="ok"} 0.021
# HELP django_http_responses_total_by_status_total Count of responses by status.
# TYPE django_http_responses_total_by_status_total counter
django_http_responses_total_by_status_total{status="200"} 7.0
django_http_responses_total_by_status_total{status="404"} 3.0
# HELP django_http_responses_total_by_status_created Count of responses by status.
# TYPE django_http_responses_total_by_status_created gauge
django_http_responses_total_by_status_created{status="200"} 1.7e9
untyped_one{__meta="x",z="1",a="2"} 5
"#;

/// One successful scrape of a text-format `body`.
fn scrape_ok(s: &mut Scraper, reg: &mut NativeRegistry, body: &str) -> (Batch, Stats) {
    let mut stats = Stats::default();
    let b = reg
        .collect(|c| {
            stats = s.emit(body.as_bytes(), Format::Text, c).unwrap();
            Ok(())
        })
        .unwrap();
    (b, stats)
}

#[test]
fn families_series_and_then_only_ids() {
    let mut s = scraper("[]", true);
    let mut reg = Collection::native_registry();
    let (b1, stats) = scrape_ok(&mut s, &mut reg, DJANGO);
    assert_eq!(
        stats,
        Stats {
            scraped: 8,
            dropped: 0,
            new_series: 8
        }
    );
    let h = "django_http_requests_latency_seconds_by_view_method:Histogram";
    let c = "django_http_responses_total_by_status_total:Counter";
    assert_eq!(
        defined(&b1),
        [
            format!(r#"{h} django_http_requests_latency_seconds_by_view_method_bucket{{le="0.01",method="GET",view="ok"}}"#),
            format!(r#"{h} django_http_requests_latency_seconds_by_view_method_bucket{{le="+Inf",method="GET",view="ok"}}"#),
            format!(r#"{h} django_http_requests_latency_seconds_by_view_method_count{{method="GET",view="ok"}}"#),
            format!(r#"{h} django_http_requests_latency_seconds_by_view_method_sum{{method="GET",view="ok"}}"#),
            format!(r#"{c} django_http_responses_total_by_status_total{{status="200"}}"#),
            format!(r#"{c} django_http_responses_total_by_status_total{{status="404"}}"#),
            r#"django_http_responses_total_by_status_created:Gauge django_http_responses_total_by_status_created{status="200"}"#.to_string(),
            // `__meta` is dropped (reserved by the WIT), the rest sorted.
            r#"untyped_one:Unknown untyped_one{a="2",z="1"}"#.to_string(),
        ]
    );
    assert_eq!(
        b1.families[0].help,
        "Histogram of request processing time labelled by view."
    );
    assert_eq!(b1.values, [7.0, 7.0, 7.0, 0.021, 7.0, 3.0, 1.7e9, 5.0]);

    let (b2, stats) = scrape_ok(&mut s, &mut reg, &DJANGO.replace("} 3.0", "} 4.0"));
    assert!(b2.families.is_empty() && b2.series.is_empty() && b2.forget.is_empty());
    assert_eq!(b2.ids, b1.ids);
    assert_eq!(b2.values, [7.0, 7.0, 7.0, 0.021, 7.0, 4.0, 1.7e9, 5.0]);
    assert_eq!(stats.new_series, 0);
}

#[test]
fn a_vanished_series_is_forgotten_and_registered_again_when_back() {
    let mut s = scraper("[]", true);
    let mut reg = Collection::native_registry();
    let mut emit = |body: &str| {
        reg.collect(|c| {
            s.emit(body.as_bytes(), Format::Text, c)
                .map(|_| ())
                .map_err(|e| sonde_plugin_sdk::Error::failed(e.to_string()))
        })
    };
    let b1 = emit("a 1\nb 2\n").unwrap();
    let b2 = emit("a 1\n").unwrap();
    assert_eq!(b2.forget, [b1.ids[1]]);
    let b3 = emit("a 1\nb 3\n").unwrap();
    // Family b is known from the first batch: only the series is defined again.
    assert_eq!(defined(&b3), ["? b{}"]);
    assert_eq!(b3.values, [1.0, 3.0]);
    assert_eq!(s.cached(), 0, "the SDK finds series printed as its texts");
}

#[test]
fn series_printed_otherwise_than_the_sdk_prints_them_are_cached() {
    let page = "b{z=\"1\",a=\"2\"} 1\na{} 2\nc{x=\"1\"} 3\nd{e=\"\",f=\"x\\\\\"} 4\n";
    let mut s = scraper("[]", true);
    let mut reg = Collection::native_registry();
    let mut emit = |s: &mut Scraper, body: &str| scrape_ok(s, &mut reg, body);
    let (b1, _) = emit(&mut s, page);
    assert_eq!(
        defined(&b1),
        [
            r#"b:Unknown b{a="2",z="1"}"#,
            r#"a:Unknown a{}"#,
            r#"c:Unknown c{x="1"}"#,
            r#"d:Unknown d{f="x\\"}"#
        ]
    );
    assert_eq!(s.cached(), 3, "b (unsorted), a (empty braces), d (empty value); not c");
    let (b2, stats) = emit(&mut s, &page.replace(" 3", " 30"));
    assert_eq!(
        (b2.ids.clone(), b2.values.clone()),
        (b1.ids.clone(), vec![1.0, 2.0, 30.0, 4.0])
    );
    assert_eq!(stats.new_series, 0);
    // Moved, and b printed both ways: one series, the first value kept.
    let (b3, stats) = emit(&mut s, "c{x=\"1\"} 5\nb{a=\"2\",z=\"1\"} 6\nb{z=\"1\",a=\"2\"} 7\n");
    assert_eq!(b3.ids, [b1.ids[2], b1.ids[0]]);
    assert_eq!(b3.values, [5.0, 6.0]);
    assert_eq!((stats.scraped, stats.new_series), (3, 0));
    assert_eq!(s.cached(), 1, "a and d are gone");
}

#[test]
fn a_malformed_body_fails_whole_and_the_next_scrape_recovers() {
    let mut s = scraper("[]", true);
    let mut reg = Collection::native_registry();
    let mut emit = |body: &str| {
        reg.collect(|c| {
            s.emit(body.as_bytes(), Format::Text, c)
                .map(|_| ())
                .map_err(|e| sonde_plugin_sdk::Error::failed(e.to_string()))
        })
    };
    let e = emit("a 1\nb{x=\"1\"} 2\nc{x=\"1\"}\n").unwrap_err();
    assert_eq!(
        format!("{e:?}"),
        r#"Error::Failed("line 3: expected a value after the labels")"#
    );
    // The series of the failed scrape were never sent: they are defined again.
    let b = emit("a 1\nb{x=\"1\"} 2\n").unwrap();
    assert_eq!(defined(&b), ["a:Unknown a{}", "b:Unknown b{x=\"1\"}"]);
}

#[test]
fn relabelling_drops_renames_and_is_cached() {
    let rules = r#"[
        {"source_labels":["__name__"],"regex":"go_.*","action":"drop"},
        {"source_labels":["__name__"],"regex":"(.*)_seconds","target_label":"__name__","replacement":"${1}_s"},
        {"regex":"instance","action":"labeldrop"}
    ]"#;
    let mut s = scraper(rules, true);
    let mut reg = Collection::native_registry();
    let body = "# TYPE go_gc gauge\ngo_gc 1\n# TYPE up_seconds gauge\nup_seconds{instance=\"x\",k=\"v\"} 2\n";
    for round in 0..2 {
        let mut stats = Stats::default();
        let b = reg
            .collect(|c| {
                stats = s.emit(body.as_bytes(), Format::Text, c).unwrap();
                Ok(())
            })
            .unwrap();
        assert_eq!(stats.dropped, 1);
        assert_eq!(b.values, [2.0]);
        if round == 0 {
            // The renamed series is outside `up_seconds`'s family: untyped.
            assert_eq!(defined(&b), ["up_s:Unknown up_s{k=\"v\"}"]);
        } else {
            assert_eq!(stats.new_series, 0);
        }
    }
}

#[test]
fn timestamps_are_kept_or_ignored() {
    let body = "a 1 1000\nb 2\n";
    for (honor, want) in [(true, vec![1000, i64::MIN]), (false, vec![])] {
        let mut s = scraper("[]", honor);
        let mut reg = Collection::native_registry();
        for _ in 0..2 {
            let b = reg
                .collect(|c| {
                    s.emit(body.as_bytes(), Format::Text, c).unwrap();
                    Ok(())
                })
                .unwrap();
            assert_eq!(b.timestamps, want);
        }
    }
}

#[test]
fn openmetrics_families_follow_the_text_format_names() {
    let body = r#"# TYPE foo counter
# HELP foo Foos.
foo_total{a="1"} 17.0 1520879607.789
foo_created{a="1"} 1520430000.0
# TYPE build info
build_info{version="1"} 1
# TYPE q gaugehistogram
q_bucket{le="+Inf"} 3
q_gcount 3
q_gsum 2
# EOF
"#;
    let mut s = scraper("[]", true);
    let mut reg = Collection::native_registry();
    let b = reg
        .collect(|c| {
            s.emit(body.as_bytes(), Format::OpenMetrics, c).unwrap();
            Ok(())
        })
        .unwrap();
    assert_eq!(
        defined(&b),
        [
            "foo_total:Counter foo_total{a=\"1\"}",
            // Prometheus 2.42 stores `_created` as a series of its own.
            "foo_total:Counter foo_created{a=\"1\"}",
            "build_info:Info build_info{version=\"1\"}",
            "q:GaugeHistogram q_bucket{le=\"+Inf\"}",
            "q:GaugeHistogram q_gcount{}",
            "q:GaugeHistogram q_gsum{}",
        ]
    );
    assert_eq!(b.families[0].help, "Foos.");
    assert_eq!(b.timestamps[0], 1520879607789);
}

#[test]
fn a_name_seen_with_two_kinds_joins_the_first_family() {
    let mut s = scraper("[]", true);
    let mut reg = Collection::native_registry();
    let body = "# TYPE x gauge\nx{a=\"1\"} 1\n# TYPE y counter\ny 1\nx{a=\"2\"} 2\n";
    let b = reg
        .collect(|c| {
            s.emit(body.as_bytes(), Format::Text, c).unwrap();
            Ok(())
        })
        .unwrap();
    assert_eq!(b.families.len(), 2, "{:?}", defined(&b));
    assert_eq!(defined(&b)[2], "x:Gauge x{a=\"2\"}");
}

#[test]
fn too_many_labels_fail_the_scrape_with_the_series_name() {
    let labels: Vec<String> = (0..65).map(|i| format!("l{i}=\"v\"")).collect();
    let body = format!("wide{{{}}} 1\n", labels.join(","));
    let mut s = scraper("[]", true);
    let mut reg = Collection::native_registry();
    let mut err = None;
    let _ = reg.collect(|c| {
        err = s.emit(body.as_bytes(), Format::Text, c).err();
        Ok(())
    });
    assert_eq!(
        err.unwrap().to_string(),
        "line 1: series wide has 65 labels (at most 64)"
    );
}

#[test]
fn the_sample_limit_counts_what_relabelling_keeps() {
    let mut s = scraper(
        r#"[{"source_labels":["__name__"],"regex":"drop_.*","action":"drop"}]"#,
        true,
    );
    s.set_sample_limit(2);
    let mut reg = Collection::native_registry();
    let body = "a 1\nb 2\ndrop_me 3\n";
    assert!(
        reg.collect(|c| s
            .emit(body.as_bytes(), Format::Text, c)
            .map(|_| ())
            .map_err(|e| sonde_plugin_sdk::Error::failed(e.to_string())))
            .is_ok()
    );
    let mut err = None;
    let _ = reg.collect(|c| {
        err = s.emit(format!("{body}c 4\n").as_bytes(), Format::Text, c).err();
        Ok(())
    });
    assert_eq!(
        err.unwrap().to_string(),
        "line 4: sample limit exceeded: 3 samples after relabelling, sample_limit is 2"
    );
}

#[test]
fn page_shape_counts_sample_lines_and_their_series_texts() {
    assert_eq!(page_shape(b""), (0, 0));
    let page = b"# HELP a x\n# TYPE a gauge\na 1\na{b=\"#\"} 2\n\nb 3";
    assert_eq!(page_shape(page), (3, "a".len() + "a{b=\"#\"}".len() + "b".len()));
    assert_eq!(page_shape(b"a 1\n"), (1, 1));
}

/// `body` fed to the scraper in pieces of `step` bytes (the last one shorter).
fn scrape_in_pieces(
    s: &mut Scraper,
    reg: &mut NativeRegistry,
    body: &str,
    format: Format,
    step: usize,
) -> Result<(Batch, Stats), String> {
    let mut stats = Stats::default();
    reg.collect(|c| {
        let mut page = s.begin(format);
        let fail = |e: ParseError| sonde_plugin_sdk::Error::failed(e.to_string());
        for piece in body.as_bytes().chunks(step) {
            s.feed(&mut page, piece, c).map_err(fail)?;
        }
        stats = s.finish(page, c).map_err(fail)?;
        Ok(())
    })
    .map(|b| (b, stats))
    .map_err(|e| format!("{e:?}"))
}

#[test]
fn a_page_read_in_pieces_stores_what_the_whole_page_does() {
    let om = "# TYPE a counter\n# HELP a Help\\non two lines.\na_total{x=\"1\"} 1\na_created{x=\"1\"} 2\n\
              # TYPE b gauge\n# UNIT b seconds\nb{y=\"}\"} 3 # {t=\"1\"} 0.5\n# EOF\n";
    let cases = [
        (DJANGO.to_string(), Format::Text),
        (DJANGO.trim_end().to_string(), Format::Text),
        (om.to_string(), Format::OpenMetrics),
    ];
    for (body, format) in &cases {
        let mut whole = (scraper("[]", true), Collection::native_registry());
        let want = whole
            .1
            .collect(|c| {
                whole.0.emit(body.as_bytes(), *format, c).unwrap();
                Ok(())
            })
            .unwrap();
        for step in [1, 2, 3, 7, 64, body.len()] {
            let (mut s, mut reg) = (scraper("[]", true), Collection::native_registry());
            let (got, stats) = scrape_in_pieces(&mut s, &mut reg, body, *format, step).unwrap();
            let families = |b: &Batch| -> Vec<String> {
                b.families
                    .iter()
                    .map(|f| format!("{} {:?} {:?} {:?}", f.name, f.kind, f.help, f.unit))
                    .collect()
            };
            assert_eq!(
                (defined(&got), families(&got), &got.values),
                (defined(&want), families(&want), &want.values),
                "{format:?} in pieces of {step}"
            );
            assert_eq!(stats.scraped, want.values.len());
            // And the next page, in other pieces, finds every series again.
            let (again, stats) = scrape_in_pieces(&mut s, &mut reg, body, *format, step + 5).unwrap();
            assert_eq!((again.ids, stats.new_series), (got.ids, 0));
        }
    }
    // Errors name the same line, whatever the pieces.
    let bad = "a 1\nb 2\nc{x=\"1\"} 3\nd{x=\"1\"\n";
    let no_eof = "a_total 1\n";
    for step in [1, 4, 100] {
        let (mut s, mut reg) = (scraper("[]", true), Collection::native_registry());
        let e = scrape_in_pieces(&mut s, &mut reg, bad, Format::Text, step).unwrap_err();
        assert_eq!(
            e, r#"Error::Failed("line 4: expected '}' after the labels")"#,
            "pieces of {step}"
        );
        let e = scrape_in_pieces(&mut s, &mut reg, no_eof, Format::OpenMetrics, step).unwrap_err();
        assert!(e.contains("line 2: the exposition does not end with"), "{e}");
    }
}

#[test]
fn the_first_page_sizes_the_registry_from_its_start() {
    let body: String = (0..10_000).map(|i| format!("m{{i=\"{i:05}\"}} {i:05}\n")).collect();
    let (lines, bytes) = page_shape(body.as_bytes());
    let (est_lines, est_bytes) = estimated_shape(&body.as_bytes()[..body.len() / 10], body.len());
    assert!(
        est_lines >= lines && est_lines <= lines * 106 / 100,
        "{est_lines} for {lines}"
    );
    assert!(
        est_bytes >= bytes && est_bytes <= bytes * 106 / 100,
        "{est_bytes} for {bytes}"
    );
    assert_eq!(
        estimated_shape(body.as_bytes(), body.len()),
        (lines, bytes),
        "whole: exact"
    );
}

/// `(series text, value bits, timestamp)` of every sample of `b`, the texts from the
/// series defined in `known` (all batches so far, `b` included).
fn samples(known: &[&Batch], b: &Batch) -> Vec<(String, u64, i64)> {
    let text = |id: u32| {
        let s = known
            .iter()
            .flat_map(|k| &k.series)
            .rfind(|s| s.id == id)
            .expect("defined");
        let labels: Vec<String> = s.labels.iter().map(|l| format!("{}={:?}", l.name, l.value)).collect();
        format!("{}{{{}}}", s.name, labels.join(","))
    };
    (0..b.ids.len())
        .map(|i| {
            (
                text(b.ids[i]),
                b.values[i].to_bits(),
                b.timestamps.get(i).copied().unwrap_or(0),
            )
        })
        .collect()
}

#[test]
fn lines_read_the_fast_way_store_what_the_general_way_stores() {
    // The first page teaches the order; the second changes values in every form the
    // fast path reads and every form it leaves to the general path. A fresh scraper,
    // which has no order to follow, reads the second page the general way only.
    let first = "# TYPE a counter\na_total 1\nb{x=\"1\"} 2\nc{y=\"2\",z=\"3\"} 3\nd{z=\"1\",a=\"2\"} 4\n\
                 e 5\nf 6\ng 7\nh{le=\"+Inf\"} 8\ni 9\nj 10\nk 11\nl 12\nm 13\nn 14\ndropme 15\no 16\n";
    let second = "# TYPE a counter\na_total 123456789012\nb{x=\"1\"} -0.25\nc{y=\"2\",z=\"3\"} 1.234567891e+09\n\
                  d{z=\"1\",a=\"2\"} 4.5\n# HELP e between\ne NaN\nf  6\ng\t7\nh{le=\"+Inf\"} 8 1700000000000\n\
                  j 10\ni 9\nk -0\nk 99\n  l 12\nm 1e400\nn 0.1\ndropme 16\no 17";
    for relabel in [
        "[]",
        r#"[{"source_labels":["__name__"],"regex":"dropme","action":"drop"}]"#,
    ] {
        for step in [second.len(), 7, 40] {
            let mut s = scraper(relabel, true);
            let mut reg = Collection::native_registry();
            let (b1, _) = scrape_ok(&mut s, &mut reg, first);
            let (b2, stats) = scrape_in_pieces(&mut s, &mut reg, second, Format::Text, step).unwrap();
            let mut fresh = scraper(relabel, true);
            let mut fresh_reg = Collection::native_registry();
            let (want, want_stats) = scrape_in_pieces(&mut fresh, &mut fresh_reg, second, Format::Text, step).unwrap();
            let got = samples(&[&b1, &b2], &b2);
            assert_eq!(got, samples(&[&want], &want), "relabel {relabel}, pieces of {step}");
            assert_eq!((stats.scraped, stats.dropped), (want_stats.scraped, want_stats.dropped));
            assert_eq!(stats.new_series, 0, "every series was known");
            assert_eq!(
                got.len(),
                15 + usize::from(relabel == "[]"),
                "k once, dropme by relabel"
            );
        }
    }
}

#[test]
fn openmetrics_lines_read_the_fast_way_store_what_the_general_way_stores() {
    let first = "# TYPE a counter\na_total 1\na_created 1.7e9\nb{x=\"1\"} 2\nc 3\n# EOF\n";
    let second =
        "# TYPE a counter\na_total 2 # {trace=\"t\"} 1\na_created 1.7e9\nb{x=\"1\"} 2.5 1700000000.5\nc 4\n# EOF\n";
    let mut s = scraper("[]", true);
    let mut reg = Collection::native_registry();
    let (b1, _) = scrape_in_pieces(&mut s, &mut reg, first, Format::OpenMetrics, first.len()).unwrap();
    let (b2, _) = scrape_in_pieces(&mut s, &mut reg, second, Format::OpenMetrics, second.len()).unwrap();
    let mut fresh = scraper("[]", true);
    let mut fresh_reg = Collection::native_registry();
    let (want, _) = scrape_in_pieces(&mut fresh, &mut fresh_reg, second, Format::OpenMetrics, second.len()).unwrap();
    assert_eq!(samples(&[&b1, &b2], &b2), samples(&[&want], &want));
    // Nothing may follow # EOF, however well it matches the expected series. (In two
    // pieces, the second starting after # EOF; the value is long enough for the fast
    // path to read it.)
    let after_eof = "# TYPE a counter\na_total 1\na_created 1.7e9\nb{x=\"1\"} 2\n# EOF\nc -003e+000\n";
    let step = after_eof.find("c -").unwrap();
    let err = scrape_in_pieces(&mut s, &mut reg, after_eof, Format::OpenMetrics, step).unwrap_err();
    assert!(err.contains("after \\\"# EOF\\\""), "{err}");
}
