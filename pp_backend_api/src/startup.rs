//! Building and running the server. [`Application::build`] binds the listener (port 0 picks a
//! free one, for tests) and assembles the app; [`Application::run_until_stopped`] serves until
//! the shutdown future resolves, then lets requests in flight finish.

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;

use actix_http::error::DispatchError;
use actix_http::{HttpService, KeepAlive, Protocol};
use actix_server::Server;
use actix_service::{ServiceFactoryExt, fn_service, map_config};
use actix_web::dev::AppConfig;
use actix_web::middleware::from_fn;
use actix_web::{App, web};
use anyhow::Context;
use pp_lib::amqp::{Broker, Topology};
use pp_lib::cache::{Redis, WorkCache};
use pp_lib::config::SecretUrl;
use pp_lib::db::{PgPool, build_pool_lazy};
use pp_lib::shutdown::{Shutdown, ShutdownTrigger};

use crate::auth::directory::{self, KeyDirectory};
use crate::auth::guard::Auth;
use crate::auth::{AuthSetting, Mode};
use crate::dashboard::Dashboard;
use crate::error::not_found;
use crate::front_door::{self, FrontDoors};
use crate::janitor::{self, RetentionConfig};
use crate::metrics::Metrics;
use crate::middleware::{json_errors, observe};
use crate::origin::Origins;
use crate::rate_limit::{RateLimits, SharedRateLimits};
use crate::relay::{self, RelayConfig};
use crate::routes;
use crate::settings::Settings;
use crate::state::AppState;
use crate::waiters::WakeWaiters;

/// Longest wait, at shutdown, for the outbox relay to finish its round.
const RELAY_STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Refuses to start when the relay's queue exists with another type or other arguments than
/// this configuration declares, or is a quorum queue on a cluster without the feature it needs:
/// a configuration error no retry mends, said once, with the way out. A broker that cannot be
/// reached is no such error: demands wait in the outbox.
async fn check_queue(relay: &RelayConfig) -> anyhow::Result<()> {
    if !relay.enabled {
        return Ok(());
    }
    let mut broker = Broker::new(
        relay.amqp.nodes.clone(),
        Topology::from_config(&relay.amqp),
        "pp_backend_api start",
    );
    Ok(broker.check_at_start().await?)
}

/// Says where Redis is and what it is used for.
fn log_redis(settings: &Settings, redis: &Redis) {
    log::info!(
        "Redis {} (keys {}:*): caching works{}",
        settings
            .redis
            .url
            .as_ref()
            .map_or_else(String::new, ToString::to_string),
        redis.prefix(),
        match settings.rate_limit.quota() {
            Some(quota) => format!(
                ", rate limit {} per client with bursts of {}",
                quota.rate, quota.burst
            ),
            None => String::new(),
        }
    );
}

/// Says who may do what, and warns when anyone who reaches the server may change things.
fn log_auth_mode(setting: AuthSetting, mode: Mode, address: SocketAddr, behind_proxy: bool) {
    match (setting, mode) {
        (AuthSetting::Off, _) if !address.ip().is_loopback() || behind_proxy => log::warn!(
            "PP_AUTH=off on {address}{}: anyone who reaches it may create works and demands, and \
             act from the dashboard if PP_ADMIN_TOKEN is known",
            if behind_proxy { ", behind a proxy" } else { "" }
        ),
        (AuthSetting::Auto, Mode::Off) => log::info!(
            "PP_AUTH: off for requests from this machine (auto, on loopback); writes for what a \
             proxy forwards"
        ),
        (_, mode) => log::info!("PP_AUTH: {}", mode.as_str()),
    }
}

/// The API server, bound and ready to run.
pub struct Application {
    address: SocketAddr,
    server: Server,
    pool: PgPool,
    relay: Option<RelayTask>,
    retention: RetentionConfig,
    state: web::Data<AppState>,
    directory: Arc<KeyDirectory>,
    /// Where to listen for the keys' changes.
    database_url: SecretUrl,
    /// How often the keys are read whole besides.
    keys_refresh: Duration,
}

/// What the outbox relay needs to start with the server.
struct RelayTask {
    config: RelayConfig,
    wakeup: Arc<tokio::sync::Notify>,
    metrics: Arc<Metrics>,
}

/// What every worker's app shares.
#[derive(Clone)]
struct Shared {
    state: web::Data<AppState>,
    dashboard: web::Data<Dashboard>,
    auth: web::Data<Auth>,
    rate_limits: SharedRateLimits,
    doors: web::Data<FrontDoors>,
    max_body: usize,
    mode: Mode,
}

/// The HTTP server on `listener`: one app per worker, each connection read through its
/// [`FrontDoor`](crate::front_door::FrontDoor), with actix-web's own server's defaults for
/// keep-alive and for clients slow to send a request (5 s) or to go away (1 s).
fn serve(
    listener: TcpListener,
    address: SocketAddr,
    settings: &Settings,
    shared: Shared,
) -> std::io::Result<Server> {
    let builder = Server::build();
    // Kept-alive connections that sit idle are closed when a graceful stop begins, as
    // actix-web's own server does, instead of holding the stop until its timeout.
    let stopping = builder.graceful_shutdown_signal();
    builder
        .workers(usize::from(settings.workers.max(1)))
        .shutdown_timeout(settings.shutdown_timeout.as_secs())
        // Shutdown is ours to trigger (see run_until_stopped): actix treats SIGINT as a forced
        // stop, and we want both SIGINT and SIGTERM to let requests finish.
        .disable_signals()
        .listen("pp-api", listener, move || {
            let shared = shared.clone();
            let doors = shared.doors.clone();
            let stopping = stopping.clone();
            let app = App::new()
                .app_data(shared.state)
                .app_data(shared.dashboard)
                .app_data(shared.auth)
                .app_data(shared.rate_limits)
                .app_data(shared.doors)
                .app_data(web::PayloadConfig::new(shared.max_body))
                .configure(|cfg| routes::configure(cfg, shared.mode))
                .route(front_door::REFUSED_PATH, web::get().to(front_door::refused))
                .default_service(web::to(not_found))
                .wrap(json_errors())
                .wrap(from_fn(observe));
            let http = HttpService::build()
                .graceful_shutdown_signal(move || {
                    let stopping = stopping.clone();
                    async move { stopping.notified().await }
                })
                .keep_alive(KeepAlive::default())
                .client_request_timeout(Duration::from_secs(5))
                .client_disconnect_timeout(Duration::from_secs(1))
                .local_addr(address)
                .finish(map_config(app, |_| AppConfig::default()));
            fn_service(move |io: TcpStream| {
                let peer = io.peer_addr().ok();
                let door = doors.open(io);
                async move { Ok::<_, DispatchError>((door, Protocol::Http1, peer)) }
            })
            .and_then(http)
        })
        .map(|server| server.run())
}

impl Application {
    /// Binds the listener and builds the server. The pool connects lazily: the server starts
    /// while the database is down and reports it on `/readyz` (503) until it is back.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        pp_lib::db::idempotency::check_key_ttl(settings.idempotency_ttl)?;
        let listener = TcpListener::bind(settings.http.addr)
            .with_context(|| format!("failed to listen on {}", settings.http.addr))?;
        let address = listener
            .local_addr()
            .context("failed to read the bound address")?;
        // Before any database connection is opened: a process that exits while a pooled
        // connection is still being opened in the background (inside OpenSSL) can crash there.
        check_queue(&settings.relay).await?;
        let pool = build_pool_lazy(&settings.database);
        let metrics = Arc::new(Metrics::new().context("failed to create the metrics registry")?);
        let redis = Redis::start(&settings.redis, metrics.redis.clone())?;
        let origins = Arc::new(Origins::new(&settings.origin));
        let rate_limits: SharedRateLimits = RateLimits::new(
            &settings.rate_limit,
            redis.as_ref(),
            origins.clone(),
            metrics.clone(),
        )?
        .map(Arc::new);
        if let Some(redis) = &redis {
            log_redis(&settings, redis);
        }
        let cache = WorkCache::new(redis, settings.cache.work_cache_settings());
        let mut state = AppState::new(
            pool.clone(),
            metrics.clone(),
            settings.idempotency_ttl,
            cache,
            settings.deadline,
            &settings.wait,
        )
        .context("failed to start the database threads")?;
        state.relaying = settings.relay.enabled;
        let state = web::Data::new(state);
        let metrics_framing = metrics.framing.clone();
        let relay = settings.relay.enabled.then(|| RelayTask {
            config: settings.relay.clone(),
            wakeup: state.outbox_wakeup.clone(),
            metrics,
        });
        if relay.is_none() {
            log::info!("outbox relay off: accepted demands wait for another relay");
        }
        let behind_proxy = origins.behind_proxy();
        let mode = Mode::resolve(settings.auth.setting, address, behind_proxy);
        log_auth_mode(settings.auth.setting, mode, address, behind_proxy);
        let auth = web::Data::new(Auth::new(
            settings.auth.setting,
            mode,
            &settings.auth,
            settings.dashboard.admin_token.clone(),
            origins,
        ));
        let directory = auth.directory.clone();
        let dashboard = web::Data::new(Dashboard::new(
            &settings.dashboard,
            &settings.relay.amqp,
            mode,
        ));
        let shared = Shared {
            state: state.clone(),
            dashboard,
            auth,
            rate_limits,
            doors: web::Data::new(FrontDoors::new(metrics_framing)),
            max_body: settings.max_body_bytes as usize,
            mode,
        };
        let server = serve(listener, address, &settings, shared)
            .context("failed to start the HTTP server")?;
        log::info!(
            "listening on http://{address} ({} workers, database {})",
            settings.workers.max(1),
            settings.database.url
        );
        Ok(Application {
            address,
            server,
            pool,
            relay,
            retention: settings.retention,
            state: state.clone(),
            directory,
            database_url: settings.database.url.clone(),
            keys_refresh: settings.auth.keys_refresh,
        })
    }

    /// The address the server listens on.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The port the server listens on (the one chosen, when asked for port 0).
    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// Serves until `shutdown` resolves, then stops accepting, lets requests in flight finish
    /// (within the shutdown timeout) and returns.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let handle = self.server.handle();
        let waiters = self.state.waiters.clone();
        let background = Background::start(
            self.pool,
            self.retention,
            self.relay,
            &self.state,
            self.directory,
            &self.database_url,
            self.keys_refresh,
        );
        let mut server = self.server;
        let outcome = tokio::select! {
            outcome = &mut server => outcome,
            () = shutdown => {
                log::info!("shutting down: finishing the requests in flight");
                // Requests waiting for works answer with what they have now.
                waiters.close();
                // The stop command is sent now; the server future carries it out, so it must be
                // polled while the stop is awaited.
                let (outcome, ()) = tokio::join!(server, handle.stop(true));
                outcome
            }
        };
        background.stop().await;
        outcome.context("the HTTP server failed")?;
        log::info!("stopped");
        Ok(())
    }
}

/// The tasks that run beside the server: the janitor, the keys kept fresh and their listener,
/// the announcer, the listener that wakes requests waiting for works, and (when this process
/// relays) the relay and the outbox's listener.
struct Background {
    purge: tokio::task::JoinHandle<()>,
    stop: ShutdownTrigger,
    keys: tokio::task::JoinHandle<()>,
    /// Tasks that end on the stop; the relay's last round is waited for apart.
    companions: Vec<tokio::task::JoinHandle<()>>,
    relay: Option<tokio::task::JoinHandle<()>>,
}

impl Background {
    fn start(
        pool: PgPool,
        retention: RetentionConfig,
        relay: Option<RelayTask>,
        state: &AppState,
        directory: Arc<KeyDirectory>,
        database_url: &SecretUrl,
        keys_refresh: Duration,
    ) -> Self {
        let purge = tokio::spawn(janitor::run(pool.clone(), retention));
        let (stop, stopping) = Shutdown::new();
        let keys_changed = Arc::new(tokio::sync::Notify::new());
        let mut companions = vec![
            tokio::spawn(pp_lib::db::listen::listen(
                database_url.clone(),
                directory::KEYS_CHANGED,
                keys_changed.clone(),
                stopping.clone(),
            )),
            tokio::spawn(state.announcer.clone().run(pool.clone(), stopping.clone())),
            tokio::spawn(pp_lib::db::listen::listen_with(
                database_url.clone(),
                pp_lib::db::works::WORKS_DONE,
                WakeWaiters(state.waiters.clone()),
                stopping.clone(),
            )),
        ];
        let keys = tokio::spawn(directory::keep_fresh(
            directory,
            pool.clone(),
            keys_changed,
            keys_refresh,
            stopping.clone(),
        ));
        let relay = relay.map(|task| {
            // A relay runs at once for a demand any replica accepted: the replica announces it.
            companions.push(tokio::spawn(pp_lib::db::listen::listen(
                database_url.clone(),
                pp_lib::db::outbox::OUTBOX_ADDED,
                task.wakeup.clone(),
                stopping.clone(),
            )));
            tokio::spawn(relay::relay(
                pool,
                task.config,
                task.wakeup,
                task.metrics,
                stopping,
            ))
        });
        Background {
            purge,
            stop,
            keys,
            companions,
            relay,
        }
    }

    /// Stops them: the relay finishes its round (and its transaction) before the process goes,
    /// the keys' last uses are written, and what the announcer owes is sent.
    async fn stop(self) {
        self.purge.abort();
        self.stop.trigger();
        if tokio::time::timeout(RELAY_STOP_TIMEOUT, self.keys)
            .await
            .is_err()
        {
            log::warn!("the API keys' last uses were not written in {RELAY_STOP_TIMEOUT:?}");
        }
        for companion in self.companions {
            let _ = tokio::time::timeout(RELAY_STOP_TIMEOUT, companion).await;
        }
        if let Some(relay) = self.relay
            && tokio::time::timeout(RELAY_STOP_TIMEOUT, relay)
                .await
                .is_err()
        {
            log::warn!(
                "the outbox relay did not stop in {RELAY_STOP_TIMEOUT:?}; its round rolls back"
            );
        }
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM; a second signal then ends the process at once (exit
/// code 130), for an operator who will not wait for the requests in flight. Call it inside the
/// runtime that runs the server.
pub fn shutdown_signal() -> impl Future<Output = ()> {
    let shutdown = pp_lib::shutdown::on_signals();
    async move { shutdown.requested().await }
}
