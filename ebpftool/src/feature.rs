use std::collections::BTreeMap;
use std::fmt::Display;

use ebpf_core::features::{self, FeatureReport, Support};
use serde_json::{json, Map, Value};

pub fn run(as_json: bool) -> Result<(), ebpf_core::Error> {
    let report = features::probe_all();
    if as_json {
        println!("{}", serde_json::to_string_pretty(&to_json(&report)).expect("JSON values always serialise"));
    } else {
        print!("{}", to_table(&report));
    }
    Ok(())
}

fn answers<K: Display>(answers: &BTreeMap<K, Support>, reasons: &mut Map<String, Value>) -> Value {
    let mut out = Map::new();
    for (key, support) in answers {
        out.insert(key.to_string(), support.as_bool().map_or(Value::Null, Value::Bool));
        if let Some(reason) = support.reason() {
            reasons.insert(key.to_string(), Value::String(reason.to_owned()));
        }
    }
    Value::Object(out)
}

/// JSON keys are the kernel's enum names in lower case without their prefix; `null` marks an
/// answer the probe could not give, and `reasons` says why for every no and unknown.
pub fn to_json(report: &FeatureReport) -> Value {
    let mut reasons = Map::new();
    let mut section_reasons = |name: &str, value: Map<String, Value>| {
        if !value.is_empty() {
            reasons.insert(name.to_owned(), Value::Object(value));
        }
    };
    let mut r = Map::new();
    let program_types = answers(&report.program_types, &mut r);
    section_reasons("program_types", std::mem::take(&mut r));
    let map_types = answers(&report.map_types, &mut r);
    section_reasons("map_types", std::mem::take(&mut r));
    let link_types = answers(&report.link_types, &mut r);
    section_reasons("link_types", std::mem::take(&mut r));
    let misc = answers(&report.misc, &mut r);
    section_reasons("misc", std::mem::take(&mut r));
    let helpers: Map<String, Value> = report.helpers.iter().map(|(t, names)| (t.to_string(), json!(names))).collect();
    let helpers_unknown: Map<String, Value> =
        report.helpers_unknown.iter().map(|(t, why)| (t.to_string(), json!(why))).collect();
    section_reasons("helpers", helpers_unknown);
    json!({
        "kernel": report.kernel,
        "program_types": program_types,
        "map_types": map_types,
        "link_types": link_types,
        "helpers": helpers,
        "misc": misc,
        "reasons": reasons,
    })
}

fn section<K: Display>(out: &mut String, title: &str, answers: &BTreeMap<K, Support>) {
    use std::fmt::Write;
    let _ = writeln!(out, "\n{title}");
    let width = answers.keys().map(|k| k.to_string().len()).max().unwrap_or(0);
    for (key, support) in answers {
        let answer = match support {
            Support::Yes => "yes".to_owned(),
            Support::No(why) => format!("no       {why}"),
            Support::Unknown(why) => format!("unknown  {why}"),
        };
        let _ = writeln!(out, "  {:width$}  {answer}", key.to_string());
    }
}

fn to_table(report: &FeatureReport) -> String {
    use std::fmt::Write;
    let mut out = format!("kernel {}\n", report.kernel);
    section(&mut out, "program types", &report.program_types);
    section(&mut out, "map types", &report.map_types);
    section(&mut out, "link types", &report.link_types);
    section(&mut out, "misc", &report.misc);
    let _ = writeln!(out, "\nhelpers (count per program type)");
    let width = report.program_types.keys().map(|k| k.name().len()).max().unwrap_or(0);
    for (program_type, names) in &report.helpers {
        let _ = writeln!(out, "  {:width$}  {}", program_type.name(), names.len());
    }
    for (program_type, why) in &report.helpers_unknown {
        let _ = writeln!(out, "  {:width$}  unknown  {why}", program_type.name());
    }
    out
}
