//! The clients of a chaos run and what each was told: HTTP demands (sent once, never retried),
//! keyed HTTP creates (retried with the same `Idempotency-Key` until answered), and poison
//! messages on the queue.
//!
//! Every request carries an `add_up_to` no other request uses, so whatever the answers, the
//! audit finds in the database what each request made, and how many times.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::time::Instant;
use uuid::Uuid;

/// HTTP demands get `add_up_to` from here up; keyed creates from [`KEYED_BASE`] up.
pub const DEMAND_BASE: i32 = 1_000_000;
pub const KEYED_BASE: i32 = 2_000_000;

/// When the clients stop sending new requests: whenever the run says so (once the faults are
/// over, and not before a share of the run has passed), so the load covers every fault however
/// long each one takes.
#[derive(Debug, Clone, Default)]
pub struct LoadEnd(Arc<OnceLock<Instant>>);

impl LoadEnd {
    /// No new request from now on.
    pub fn end(&self) {
        let _ = self.0.set(Instant::now());
    }

    fn is_over(&self) -> bool {
        self.0.get().is_some()
    }

    /// Whether `grace` has passed since the end.
    fn is_over_by(&self, grace: Duration) -> bool {
        self.0.get().is_some_and(|ended| ended.elapsed() >= grace)
    }
}

/// What the API answered each HTTP demand.
#[derive(Debug, Default)]
pub struct DemandAnswers {
    /// Accepted (202): add_up_to → the message id it will be published with.
    pub accepted: BTreeMap<i32, Uuid>,
    /// Sent, no answer (the API was down or died mid-request): their add_up_to.
    pub unanswered: Vec<i32>,
    /// Answered with an error status (e.g. 503 while the database restarted).
    pub refused: Vec<i32>,
}

/// Sends demands from `workers` tasks at `per_second` in all, until the load ends; worker `i`
/// sends to API `i` round the list of `base_urls`.
pub async fn send_demands(
    base_urls: Vec<String>,
    workers: usize,
    per_second: f64,
    end: LoadEnd,
) -> DemandAnswers {
    let client = client();
    let next = Arc::new(std::sync::atomic::AtomicI32::new(DEMAND_BASE));
    let pause = Duration::from_secs_f64(workers as f64 / per_second.max(0.1));
    let tasks: Vec<_> = (0..workers)
        .map(|worker| {
            let base_url = base_urls[worker % base_urls.len()].clone();
            let (client, next, end) = (client.clone(), next.clone(), end.clone());
            tokio::spawn(async move {
                let mut answers = DemandAnswers::default();
                while !end.is_over() {
                    let add_up_to = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let sent = client
                        .post(format!("{base_url}/work/demand"))
                        .header("content-type", "application/json")
                        .body(format!(r#"{{"add_up_to": {add_up_to}}}"#))
                        .send()
                        .await;
                    match sent {
                        Ok(response) if response.status().as_u16() == 202 => {
                            let id = response
                                .json::<serde_json::Value>()
                                .await
                                .ok()
                                .and_then(|body| body["message_id"].as_str().map(str::to_owned))
                                .and_then(|id| Uuid::parse_str(&id).ok());
                            match id {
                                Some(id) => {
                                    answers.accepted.insert(add_up_to, id);
                                }
                                // A 202 whose body was cut: the demand may be in, unacknowledged.
                                None => answers.unanswered.push(add_up_to),
                            }
                        }
                        Ok(_) => answers.refused.push(add_up_to),
                        Err(_) => answers.unanswered.push(add_up_to),
                    }
                    tokio::time::sleep(pause).await;
                }
                answers
            })
        })
        .collect();
    let mut all = DemandAnswers::default();
    for task in tasks {
        if let Ok(answers) = task.await {
            all.accepted.extend(answers.accepted);
            all.unanswered.extend(answers.unanswered);
            all.refused.extend(answers.refused);
        }
    }
    all
}

/// What keyed creates achieved.
#[derive(Debug, Default)]
pub struct KeyedAnswers {
    /// Acknowledged (200): add_up_to → (key, the work's id).
    pub created: BTreeMap<i32, (String, i64)>,
    /// Never acknowledged before the end, however often retried: their add_up_to.
    pub unanswered: Vec<i32>,
    /// Attempts that got no answer or an error and were retried.
    pub retries: u64,
}

/// Creates works with an `Idempotency-Key` from `workers` tasks at `per_second` in all, new
/// ones until the load ends; each is retried with its key (and its body) until answered 200 or
/// `give_up` after the end. Each attempt goes to the next API of `base_urls`, as through a
/// load balancer: a retry may reach another replica than the first attempt.
pub async fn create_keyed(
    base_urls: Vec<String>,
    workers: usize,
    per_second: f64,
    end: LoadEnd,
    give_up: Duration,
) -> KeyedAnswers {
    let client = client();
    let next = Arc::new(std::sync::atomic::AtomicI32::new(KEYED_BASE));
    let pause = Duration::from_secs_f64(workers as f64 / per_second.max(0.1));
    let run = Uuid::new_v4().simple().to_string();
    let tasks: Vec<_> = (0..workers)
        .map(|worker| {
            let (client, base_urls, next, run, end) = (
                client.clone(),
                base_urls.clone(),
                next.clone(),
                run.clone(),
                end.clone(),
            );
            tokio::spawn(async move {
                let mut answers = KeyedAnswers::default();
                let mut attempt = worker;
                while !end.is_over() {
                    let add_up_to = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let key = format!("chaos-{run}-{add_up_to}");
                    loop {
                        let base_url = &base_urls[attempt % base_urls.len()];
                        attempt += 1;
                        let sent = client
                            .post(format!("{base_url}/work"))
                            .header("content-type", "application/json")
                            .header("idempotency-key", &key)
                            .body(format!(r#"{{"add_up_to": {add_up_to}}}"#))
                            .send()
                            .await;
                        let created = match sent {
                            Ok(response) if response.status().as_u16() == 200 => response
                                .json::<serde_json::Value>()
                                .await
                                .ok()
                                .and_then(|work| work["id"].as_i64()),
                            _ => None,
                        };
                        if let Some(id) = created {
                            answers.created.insert(add_up_to, (key, id));
                            break;
                        }
                        if end.is_over_by(give_up) {
                            answers.unanswered.push(add_up_to);
                            break;
                        }
                        answers.retries += 1;
                        tokio::time::sleep(Duration::from_millis(250)).await;
                    }
                    tokio::time::sleep(pause).await;
                }
                answers
            })
        })
        .collect();
    let mut all = KeyedAnswers::default();
    for task in tasks {
        if let Ok(answers) = task.await {
            all.created.extend(answers.created);
            all.unanswered.extend(answers.unanswered);
            all.retries += answers.retries;
        }
    }
    all
}

/// Messages no consumer can ever record: each must end in the dead-letter queue.
pub const POISON: [&[u8]; 4] = [
    b"not json at all",
    br#"{"add_up_to": -3, "done": false}"#,
    br#"{"add_up_to": "four", "done": false}"#,
    br#"[1, 2, 3]"#,
];

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .connect_timeout(Duration::from_secs(1))
        .build()
        .expect("a client with timeouts builds")
}
