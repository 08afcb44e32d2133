//! Runs `scripts/chart_check.py`, which lints and renders the chart with Helm's own library (helm-sdkpy, Python),
//! and reads its report. The Python comes from the virtualenv `scripts/test.sh` prepares (`ensure_chart_tools` in
//! `scripts/peers.sh`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use serde_json::Value;
use tokio::process::Command;

use crate::support::kube_api::FakeKube;

/// Loading Helm's 120 MB library and installing into the fake take a second or two; this is far beyond that.
const RUN_LIMIT: Duration = Duration::from_secs(60);

/// The Kubernetes versions every rendered object is validated against.
pub const KUBE_VERSIONS: [&str; 2] = ["1.29.0", "1.33.0"];

/// What one render reported.
#[derive(Debug)]
pub struct Rendered {
    /// The objects of the release's manifest, as Helm rendered them.
    pub objects: Vec<Value>,
    /// NOTES.txt, rendered.
    pub notes: String,
    /// Sidecar mode: the pod spec (containers and volumes) NOTES.txt tells users to add.
    pub sidecar: Option<Value>,
    /// `Kind/name` of every object that passed kubernetes-validate, by Kubernetes version.
    pub validated: BTreeMap<String, Vec<String>>,
    /// `Kind/name` of the objects kubernetes-validate has no schema for.
    pub unknown: Vec<String>,
}

impl Rendered {
    /// The only object of `kind`; fails the test when there is none or several.
    pub fn one(&self, kind: &str) -> &Value {
        let mut found = self.objects.iter().filter(|object| object["kind"] == kind);
        let object = found.next().unwrap_or_else(|| panic!("no {kind} rendered"));
        assert!(found.next().is_none(), "more than one {kind} rendered");
        object
    }

    /// The kinds rendered, sorted.
    pub fn kinds(&self) -> Vec<String> {
        let mut kinds: Vec<String> =
            self.objects.iter().map(|object| object["kind"].as_str().unwrap_or_default().to_owned()).collect();
        kinds.sort();
        kinds
    }

    /// The agent's config file, from the ConfigMap.
    pub fn config(&self) -> serde_norway::Value {
        let text = self.one("ConfigMap")["data"]["config.yaml"].as_str().expect("the ConfigMap holds config.yaml");
        serde_norway::from_str(text).expect("config.yaml is YAML")
    }
}

/// The chart, in this repository.
pub fn chart() -> PathBuf {
    repository().join("helm/queue-scaler")
}

/// One of the chart's example values files.
pub fn example(name: &str) -> PathBuf {
    chart().join("examples").join(name)
}

fn repository() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `QS_TEST_CHART_PYTHON`, else the virtualenv `ensure_chart_tools` makes by default.
fn python() -> PathBuf {
    if let Some(python) = std::env::var_os("QS_TEST_CHART_PYTHON") {
        return PathBuf::from(python);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .expect("HOME or XDG_CACHE_HOME is set");
    let python = cache.join("queue-scaler/chart-venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/test.sh, or `source scripts/peers.sh && ensure_chart_tools`",
        python.display()
    );
    python
}

async fn run_script(args: &[&str]) -> Output {
    let mut command = Command::new(python());
    command.arg(repository().join("scripts/chart_check.py")).args(args).kill_on_drop(true);
    tokio::time::timeout(RUN_LIMIT, command.output())
        .await
        .unwrap_or_else(|_| panic!("chart_check.py {args:?} did not finish within {RUN_LIMIT:?}"))
        .expect("start chart_check.py")
}

fn report(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!("chart_check.py printed no report ({error}); stderr: {}", String::from_utf8_lossy(&output.stderr))
    })
}

/// `helm lint`: the exit status and the messages (severity and path; Helm's text is lost on the way).
pub async fn lint() -> (bool, Value) {
    let chart = chart();
    let output = run_script(&["lint", chart.to_str().expect("a UTF-8 path")]).await;
    (output.status.success(), report(&output))
}

/// Installs the chart as `release` into `namespace` of the fake with the example files `values` (in order) and
/// then `overrides`, and validates what it rendered. `Err` carries what Helm or kubernetes-validate said.
pub async fn render(
    kube: &FakeKube,
    namespace: &str,
    release: &str,
    values: &[&str],
    overrides: Option<Value>,
) -> Result<Rendered, String> {
    let chart = chart();
    let kubeconfig = kube.kubeconfig_path().to_str().expect("a UTF-8 path").to_owned();
    let mut args: Vec<String> = vec!["render".into(), chart.to_str().expect("a UTF-8 path").into()];
    args.extend(["--kubeconfig".into(), kubeconfig, "--namespace".into(), namespace.into()]);
    args.extend(["--release".into(), release.into()]);
    for version in KUBE_VERSIONS {
        args.extend(["--kube-version".into(), version.into()]);
    }
    for file in values {
        args.extend(["--values".into(), example(file).to_str().expect("a UTF-8 path").into()]);
    }
    if let Some(overrides) = overrides {
        args.extend(["--set-json".into(), overrides.to_string()]);
    }
    let output = run_script(&args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    let mut report = report(&output);
    let strings = |value: &Value| -> Vec<String> {
        value.as_array().into_iter().flatten().filter_map(Value::as_str).map(str::to_owned).collect()
    };
    let validated = report["validated"]
        .as_object()
        .expect("a validated map")
        .iter()
        .map(|(version, names)| (version.clone(), strings(names)))
        .collect();
    Ok(Rendered {
        objects: report["objects"].as_array().cloned().expect("a list of objects"),
        notes: report["notes"].as_str().unwrap_or_default().to_owned(),
        sidecar: Some(report["sidecar"].take()).filter(|snippet| !snippet.is_null()),
        validated,
        unknown: strings(&report["unknown"]),
    })
}
