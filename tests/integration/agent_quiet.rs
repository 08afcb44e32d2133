//! Quiet, then remove, end to end: three example RabbitMQ workers run as the pods of a Deployment on the fake API
//! (each on a loopback address of its own, as pods have IPs), each busy with a 5 s job. The queue then reads empty,
//! so the decision is 3 → 1: the agent quiets two workers, gives them the lowest deletion cost, and writes
//! `replicas: 1` only once both hold no job — no job is handed back, every job is done exactly once. A second test
//! raises the backlog while workers are quiet: they are resumed and no pod is added.

use std::time::{Duration, Instant};

use queue_scaler::target::workload::PROTECT_EVERY;

use crate::support::agent::{Agent, free_port};
use crate::support::eventually;
use crate::support::kube_api::FakeKube;
use crate::support::rabbitmq::{TestQueue, amqp_url};
use crate::support::workers::{DoneLog, Worker, timed};

const NS: &str = "video";
const COST: &str = "controller.kubernetes.io/pod-deletion-cost";
const JOB_MS: u64 = 5_000;

/// The agent's config: the queue's ready messages only (a busy fleet looks idle: the case quiet is for), down at
/// once, quiet scale-down on the workers' port with their token.
fn body(queue: &str, port: u16, token_file: &str) -> String {
    body_with(queue, port, token_file, "30m")
}

fn body_with(queue: &str, port: u16, token_file: &str, quiet_timeout: &str) -> String {
    format!(
        "pollInterval: 250ms\ntargets:\n  - deployment: worker\n    minReplicas: 1\n    maxReplicas: 5\n    behavior: {{scaleDown: {{stabilizationWindowSeconds: 0}}}}\n    scaleDown: {{quiet: true, quietTimeout: {quiet_timeout}, workerMetricsPort: {port}, tokenFile: {token_file}}}\n    sources:\n      - {{type: rabbitmq, url: '{}', queue: {queue}, backlogPerWorker: 1}}\n",
        amqp_url()
    )
}

struct Fleet {
    kube: FakeKube,
    queue: TestQueue,
    workers: Vec<Worker>,
    log: DoneLog,
    port: u16,
    token_file: tempfile::NamedTempFile,
}

/// Three workers as pods `worker-0..2` at 127.0.6.{1,2,3}, each holding one 5 s job, created oldest to youngest.
async fn busy_fleet() -> Fleet {
    busy_fleet_with(JOB_MS).await
}

/// [`busy_fleet`] with jobs of `job_ms`.
async fn busy_fleet_with(job_ms: u64) -> Fleet {
    let queue = TestQueue::new("quiet").await;
    let kube = FakeKube::start().await;
    kube.create_deployment(NS, "worker", 3, &[("app", "worker")]);
    let port = free_port();
    let token_file = tempfile::NamedTempFile::new().expect("token file");
    std::fs::write(token_file.path(), "s3cret-drain-token\n").expect("write token");
    let log = DoneLog::default();
    let mut workers = Vec::new();
    for i in 0..3 {
        let ip = format!("127.0.6.{}", i + 1);
        kube.create_pod(NS, &format!("worker-{i}"), &[("app", "worker")], &ip);
        let mut env = timed(&[("AMQP_URL".into(), amqp_url()), ("QUEUE".into(), queue.name.clone())], job_ms, 10_000);
        env.extend([
            ("WORKER_METRICS_ADDR".to_owned(), format!("{ip}:{port}")),
            ("CONCURRENCY".to_owned(), "1".to_owned()),
            ("DRAIN_TOKEN".to_owned(), "s3cret-drain-token".to_owned()),
        ]);
        workers.push(Worker::start("worker_rabbitmq", i, &env, &log));
        // Pods created a second apart have distinct ages.
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    queue.publish(0, 3).await;
    for worker in &workers {
        worker.holding(1, Duration::from_secs(20)).await;
    }
    Fleet { kube, queue, workers, log, port, token_file }
}

fn quiet_pods(step: &str) -> String {
    format!("queue_scaler_quiet_pods_total{{deployment=\"worker\",step=\"{step}\"}}")
}

/// The reasons of the Events about the Deployment, oldest first.
fn event_reasons(kube: &FakeKube) -> Vec<String> {
    kube.events(NS).iter().filter_map(|e| e["reason"].as_str().map(str::to_owned)).collect()
}

fn cost(kube: &FakeKube, pod: &str) -> Option<String> {
    kube.pod(NS, pod).and_then(|p| p["metadata"]["annotations"][COST].as_str().map(str::to_owned))
}

#[tokio::test]
async fn a_scale_down_quiets_the_youngest_workers_and_lowers_replicas_only_when_their_jobs_are_done() {
    let fleet = busy_fleet().await;
    let started = Instant::now();
    let token = fleet.token_file.path().display().to_string();
    let agent = Agent::start(&fleet.kube, NS, &body(&fleet.queue.name, fleet.port, &token), &[]).await;
    // All three are equally busy: the two youngest are quieted.
    agent.logged("told 2 worker(s) to go quiet", Duration::from_secs(20)).await;
    let quieted_at = started.elapsed();
    assert_eq!(cost(&fleet.kube, "worker-2").as_deref(), Some("-1000"));
    assert_eq!(cost(&fleet.kube, "worker-1").as_deref(), Some("-1000"));
    assert_eq!(cost(&fleet.kube, "worker-0"), None, "the oldest keeps working");
    assert!(fleet.kube.scale_writes(NS, "worker").is_empty(), "nothing written while the quiet workers work");

    fleet.kube.wait_until_replicas(NS, "worker", 1, Duration::from_secs(20)).await.expect("scaled down to 1");
    let written_at = started.elapsed();
    // By the time the count was written, both quiet workers reported no job: every job had been done.
    let done = fleet.log.lock().expect("log").clone();
    let done_by = |n: usize| done.iter().find(|(w, _, _)| *w == n).map(|(_, _, at)| at.duration_since(started));
    let (one, two) = (done_by(1).expect("worker-1's job done"), done_by(2).expect("worker-2's job done"));
    assert!(written_at >= one.max(two), "written at {written_at:?}, before jobs ended at {one:?} and {two:?}");
    let mut bodies: Vec<String> = done.iter().map(|(_, body, _)| body.clone()).collect();
    bodies.sort();
    assert_eq!(bodies.len(), 3, "every job done exactly once: {bodies:?}");
    bodies.dedup();
    assert_eq!(bodies.len(), 3, "no job done twice: {done:?}");
    assert_eq!(fleet.queue.ready().await, 0, "no job handed back");
    println!(
        "timeline: quieted at {quieted_at:?}, jobs of the quiet workers done at {one:?} and {two:?}, replicas 3 -> 1 written at {written_at:?}"
    );
    assert_eq!(agent.metric(&quiet_pods("removed")).await, Some(2.0));
    assert_eq!(agent.metric(&quiet_pods("quieted")).await, Some(2.0));
    assert_eq!(event_reasons(&fleet.kube), ["Quieting", "SuccessfulRescale"], "what kubectl get events shows");
    agent.stop().await;
    drop(fleet.workers);
}

#[tokio::test]
async fn a_backlog_that_rises_while_workers_are_quiet_resumes_them_and_adds_no_pod() {
    let fleet = busy_fleet().await;
    let token = fleet.token_file.path().display().to_string();
    let agent = Agent::start(&fleet.kube, NS, &body(&fleet.queue.name, fleet.port, &token), &[]).await;
    agent.logged("told 2 worker(s) to go quiet", Duration::from_secs(20)).await;
    // Three new uploads: the decision is 3 again.
    fleet.queue.publish(3, 3).await;
    agent.logged("the decision rose again: resumed 2 quiet worker(s)", Duration::from_secs(10)).await;
    assert_eq!(cost(&fleet.kube, "worker-2").as_deref(), Some("0"), "back to a neutral deletion cost");
    assert_eq!(agent.metric(&quiet_pods("resumed")).await, Some(2.0));
    assert!(event_reasons(&fleet.kube).contains(&"QuietResumed".to_owned()), "{:?}", fleet.kube.events(NS));
    // The resumed workers take jobs again: all six are done, by all three workers.
    eventually(Duration::from_secs(30), "all six jobs done", || async {
        (fleet.log.lock().expect("log").len() >= 6).then_some(())
    })
    .await;
    let done = fleet.log.lock().expect("log").clone();
    let again = |worker: usize| done.iter().filter(|(w, _, _)| *w == worker).count() >= 2;
    assert!(again(1) || again(2), "a resumed worker took a job again: {done:?}");
    let mut bodies: Vec<&str> = done.iter().map(|(_, body, _)| body.as_str()).collect();
    bodies.sort();
    bodies.dedup();
    assert_eq!(bodies.len(), done.len(), "no job done twice: {done:?}");
    assert!(
        fleet.kube.scale_writes(NS, "worker").iter().all(|(_, n)| *n <= 3),
        "no pod added: {:?}",
        fleet.kube.scale_writes(NS, "worker")
    );
    agent.stop().await;
    drop(fleet.workers);
}

#[tokio::test]
async fn busy_pods_are_marked_against_node_consolidation_and_idle_ones_are_not() {
    let kube = FakeKube::start().await;
    kube.create_deployment(NS, "worker", 2, &[("app", "worker")]);
    let port = free_port();
    kube.create_pod(NS, "worker-busy", &[("app", "worker")], "127.0.7.1");
    kube.create_pod(NS, "worker-idle", &[("app", "worker")], "127.0.7.2");
    let busy = crate::support::workers::serve_status("127.0.7.1", port, 2, Duration::ZERO).await;
    let idle = crate::support::workers::serve_status("127.0.7.2", port, 0, Duration::ZERO).await;
    // A backlog of 20 at 10 per worker: the count holds at 2.
    let body = format!(
        "pollInterval: 250ms\ntargets:\n  - deployment: worker\n    maxReplicas: 5\n    scaleDown: {{protectBusy: true, workerMetricsPort: {port}}}\n    sources: [{{type: fixed, backlog: 20, backlogPerWorker: 10}}]\n"
    );
    let agent = Agent::start(&kube, NS, &body, &[]).await;
    let annotation = |pod: &str, key: &str| {
        kube.pod(NS, pod).and_then(|p| p["metadata"]["annotations"][key].as_str().map(str::to_owned))
    };
    eventually(Duration::from_secs(20), "the busy pod marked", || async {
        annotation("worker-busy", "karpenter.sh/do-not-disrupt").filter(|v| v == "true")
    })
    .await;
    assert_eq!(annotation("worker-busy", "cluster-autoscaler.kubernetes.io/safe-to-evict").as_deref(), Some("false"));
    assert_eq!(annotation("worker-idle", "karpenter.sh/do-not-disrupt"), None, "an idle pod may be moved");
    assert!(kube.scale_writes(NS, "worker").is_empty());
    // The busy worker finishes its jobs: the mark is lifted at the next protection pass (every 30 s), so
    // consolidation may move it again.
    busy.abort();
    let _ = busy.await;
    let now_idle = crate::support::workers::serve_status("127.0.7.1", port, 0, Duration::ZERO).await;
    eventually(PROTECT_EVERY + Duration::from_secs(15), "the mark lifted from the now idle pod", || async {
        let lifted = annotation("worker-busy", "karpenter.sh/do-not-disrupt").is_none()
            && annotation("worker-busy", "cluster-autoscaler.kubernetes.io/safe-to-evict").is_none();
        lifted.then_some(())
    })
    .await;
    agent.stop().await;
    now_idle.abort();
    idle.abort();
}

#[tokio::test]
async fn quiet_workers_still_busy_at_quiet_timeout_are_removed_anyway_and_the_agent_says_so() {
    // Jobs of a minute against a quietTimeout of 2 s.
    let fleet = busy_fleet_with(60_000).await;
    let token = fleet.token_file.path().display().to_string();
    let agent = Agent::start(&fleet.kube, NS, &body_with(&fleet.queue.name, fleet.port, &token, "2s"), &[]).await;
    agent.logged("told 2 worker(s) to go quiet", Duration::from_secs(20)).await;
    let quieted = Instant::now();
    fleet.kube.wait_until_replicas(NS, "worker", 1, Duration::from_secs(20)).await.expect("scaled down at the timeout");
    assert!(
        quieted.elapsed() >= Duration::from_secs(2),
        "written {:?} after quieting, before the timeout",
        quieted.elapsed()
    );
    agent
        .logged("quietTimeout (2s) ran out with 2 quiet worker(s) still holding 2 job(s)", Duration::from_secs(5))
        .await;
    assert_eq!(agent.metric(&quiet_pods("timed_out")).await, Some(2.0));
    let warnings: Vec<_> = fleet.kube.events(NS).into_iter().filter(|e| e["reason"] == "QuietTimeout").collect();
    assert_eq!(warnings.len(), 1, "{:?}", fleet.kube.events(NS));
    assert_eq!(warnings[0]["type"], "Warning");
    // The quiet pods go first: the oldest, still taking jobs, stays.
    assert_eq!(cost(&fleet.kube, "worker-0"), None);
    assert_eq!(cost(&fleet.kube, "worker-1").as_deref(), Some("-1000"));
    agent.stop().await;
    drop(fleet.workers);
}
