//! authgate: a multi-tenant authentication gateway on Pingora.
//!
//! One process terminates TLS for many host names (certificates chosen by SNI), routes each
//! host to its app's load-balanced, health-checked upstream pool, and hot-reloads its
//! configuration. The crate is organised one module per responsibility:
//!
//! | module | job |
//! |---|---|
//! | [`access_log`] | the access and audit logs, written off the request path |
//! | [`config`] | YAML schema, loading, errors that name file and field, the reload watcher |
//! | [`state`] | the compiled, immutable [`state::Snapshot`] and the `ArcSwap` holding it |
//! | [`tls`] | certificate store and SNI selection |
//! | [`routing`] | host normalisation and the host table |
//! | [`upstream`] | pools, load balancing, health checks |
//! | [`request`] | checks every request passes before routing |
//! | [`auth`] | providers, policy, login flow, `/oauth2/*`, identity headers |
//! | [`session`] | sessions, sealed ticket cookies, the session store |
//! | [`proxy`] | the Pingora `ProxyHttp` glue |
//! | [`trace_context`] | `X-Request-Id` and W3C `traceparent` |
//! | [`telemetry`] | optional OpenTelemetry traces, exported with OTLP/HTTP |
//! | [`pages`] | error pages the gateway writes itself |
//! | [`admin`] | admin endpoints and the HTTP→HTTPS redirect |
//! | [`metrics`] | Prometheus metrics |
//! | [`server`] | assembling the Pingora server from a configuration |
//! | [`signals`] | SIGTERM/SIGINT/SIGQUIT as Pingora, SIGUSR2 starts the upgraded binary |
//! | [`listen`] | binding listeners up front, taking them over on `--upgrade`, systemd readiness |
//! | [`echo`] | a development upstream that echoes requests |
//! | [`health`] | `authgate health`, the shell-less probe of `/ready` for container health checks |
//! | [`import`] | `authgate import oauth2-proxy`: configuration from an oauth2-proxy fleet |

#![warn(clippy::all)]

pub mod access_log;
pub mod admin;
pub mod auth;
pub mod client;
pub mod config;
pub mod echo;
pub mod explain;
pub mod health;
pub mod import;
pub mod listen;
pub mod logging;
pub mod metrics;
pub mod pages;
pub mod proxy;
pub mod proxy_protocol;
pub mod request;
pub mod routing;
pub mod server;
pub mod session;
pub mod signals;
pub mod state;
pub mod target;
pub mod telemetry;
pub mod templates;
pub mod tls;
pub mod trace_context;
pub mod upstream;
