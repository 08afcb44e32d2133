//! Running the real `kubectl` against the fake, isolated from the machine's own configuration: its
//! kubeconfig, home and discovery cache live in the fake's temporary directory, and a hung kubectl
//! is killed.

use std::process::Stdio;
use std::time::Duration;

use super::FakeKube;

/// How long one kubectl command may take before the test gives up on it.
const KUBECTL_TIMEOUT: Duration = Duration::from_secs(30);

/// What a kubectl command printed and whether it succeeded.
#[derive(Debug)]
pub struct KubectlOutput {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl FakeKube {
    /// Runs `kubectl ARGS` against the fake; `Err` if kubectl cannot be started or takes too long.
    pub async fn kubectl(&self, args: &[&str]) -> Result<KubectlOutput, String> {
        let mut command = tokio::process::Command::new("kubectl");
        command
            .arg("--kubeconfig")
            .arg(self.kubeconfig_path())
            .arg("--cache-dir")
            .arg(self.home.path().join("cache"))
            .arg("--request-timeout=10s")
            .args(args)
            .env("HOME", self.home.path())
            .env_remove("KUBECONFIG")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let output = tokio::time::timeout(KUBECTL_TIMEOUT, command.output())
            .await
            .map_err(|_| format!("kubectl {args:?} did not finish within {KUBECTL_TIMEOUT:?}"))?
            .map_err(|error| format!("cannot run kubectl: {error}"))?;
        Ok(KubectlOutput {
            success: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }
}
