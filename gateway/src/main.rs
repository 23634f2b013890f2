//! The `authgate` command line: `run`, `check`, `health`, `import`, `session mint`, and the `echo`
//! development upstream.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use authgate::logging::{self, LogFormat};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// authgate: a multi-tenant authentication gateway.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Log format.
    #[arg(long, global = true, env = "AUTHGATE_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve with the given configuration (reloaded on change and on SIGHUP).
    Run {
        /// The main configuration file.
        #[arg(short, long, env = "AUTHGATE_CONFIG", default_value = "config/gateway.yaml")]
        config: PathBuf,
        /// Binary upgrade: take the listening sockets over from the running process (send it
        /// SIGQUIT once this one logs that it is waiting) instead of binding them.
        #[arg(long)]
        upgrade: bool,
    },
    /// Check the whole configuration, like `nginx -t`: exit 0, or exit 1 listing every error.
    Check {
        /// The main configuration file.
        #[arg(short, long, env = "AUTHGATE_CONFIG", default_value = "config/gateway.yaml")]
        config: PathBuf,
        /// Also bind every listener (and release it): fails when an address is in use or not
        /// on this host.
        #[arg(long)]
        bind: bool,
        /// No DNS: do not resolve upstream names (for CI outside the cluster).
        #[arg(long)]
        offline: bool,
    },
    /// Probe a running gateway's admin `/ready` for container health checks (no shell or curl
    /// needed): exit 0 on a 2xx answer, 1 when it fails or does not answer within the timeout.
    Health {
        /// The URL to probe (plain `http://`).
        #[arg(long, env = "AUTHGATE_HEALTH_URL", default_value = "http://127.0.0.1:9090/ready")]
        url: String,
        /// The longest wait for the whole answer.
        #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
    /// What the gateway would answer to a request, and why (app, canonical path, route,
    /// policy, answer), without starting a server or using the network. Exit 0 when the
    /// request would be admitted, 1 when refused, 2 on a usage or configuration error.
    Explain {
        /// The main configuration file.
        #[arg(short, long, env = "AUTHGATE_CONFIG", default_value = "config/gateway.yaml")]
        config: PathBuf,
        /// The request's URL, its path exactly as a client sends it.
        #[arg(long)]
        url: String,
        /// The request method.
        #[arg(long, default_value = "GET")]
        method: http::Method,
        /// A signed-in user with this (verified) email.
        #[arg(long, conflicts_with = "token")]
        email: Option<String>,
        /// The user's groups, comma-separated.
        #[arg(long, value_delimiter = ',', requires = "email")]
        groups: Vec<String>,
        /// The user's subject (default: the email's local part).
        #[arg(long, requires = "email")]
        subject: Option<String>,
        /// A bearer JWT (its claims are read without verifying it: explain works offline).
        #[arg(long)]
        token: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Session tools.
    Session {
        #[command(subcommand)]
        command: SessionCommand,
    },
    /// Import another proxy's configuration (`authgate import oauth2-proxy --out DIR INPUT...`).
    Import {
        #[command(subcommand)]
        from: ImportFrom,
    },
    /// Run development upstreams that echo each request back as JSON.
    Echo {
        /// Address to listen on; repeat for several upstreams.
        #[arg(short, long, required = true)]
        listen: Vec<std::net::SocketAddr>,
    },
}

#[derive(Subcommand)]
enum ImportFrom {
    /// oauth2-proxy: .cfg files, command lines, OAUTH2_PROXY_* environment files, alpha
    /// configs and Kubernetes manifests (files or directories); the kind is detected.
    #[command(name = "oauth2-proxy")]
    Oauth2Proxy {
        /// Output directory: gateway.yaml, apps.d/, import-report.md.
        #[arg(long, required_unless_present = "print_mapping_table")]
        out: Option<PathBuf>,
        /// Host of a single sidecar whose redirect_url does not name it.
        #[arg(long)]
        host: Option<String>,
        /// Exit 1 when any option or value was not carried over.
        #[arg(long)]
        strict: bool,
        /// Print the option mapping table (Markdown) and exit.
        #[arg(long)]
        print_mapping_table: bool,
        /// Inputs.
        #[arg(required_unless_present = "print_mapping_table")]
        inputs: Vec<PathBuf>,
    },
}

#[derive(Subcommand)]
enum SessionCommand {
    /// Create a session in the configured store (Redis, for a running gateway to see it) and
    /// print its cookie as `name=value`. For load tests; needs the same environment (cookie
    /// keys, store credentials) as the gateway.
    Mint {
        /// The main configuration file.
        #[arg(short, long, env = "AUTHGATE_CONFIG", default_value = "config/gateway.yaml")]
        config: PathBuf,
        /// Provider the session belongs to.
        #[arg(long)]
        provider: String,
        /// Verified email of the user.
        #[arg(long)]
        email: String,
        /// Subject (user id); default: the email's local part.
        #[arg(long)]
        subject: Option<String>,
        /// Groups, comma-separated.
        #[arg(long, value_delimiter = ',')]
        groups: Vec<String>,
        /// Lifetime.
        #[arg(long, default_value = "12h", value_parser = humantime::parse_duration)]
        ttl: std::time::Duration,
        /// How many sessions to mint (one cookie per line).
        #[arg(long, default_value_t = 1)]
        count: usize,
    },
    /// End every session of a user on every replica (shared Redis store): by subject at a
    /// provider, or by email at any provider. Prints how many sessions ended.
    Revoke {
        /// The main configuration file.
        #[arg(short, long, env = "AUTHGATE_CONFIG", default_value = "config/gateway.yaml")]
        config: PathBuf,
        /// The user's subject (`sub`); needs --provider.
        #[arg(
            long,
            requires = "provider",
            conflicts_with = "email",
            required_unless_present = "email"
        )]
        sub: Option<String>,
        /// The provider of --sub.
        #[arg(long)]
        provider: Option<String>,
        /// The user's email address (any provider).
        #[arg(long)]
        email: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format, matches!(cli.command, Command::Run { .. }));
    match cli.command {
        Command::Run { config, upgrade } => {
            let sockets = if upgrade {
                authgate::server::Sockets::Upgrade
            } else {
                authgate::server::Sockets::Bind
            };
            run(&config, sockets)
        }
        Command::Check { config, bind, offline } => check(&config, bind, offline),
        Command::Health { url, timeout } => match authgate::health::probe(&url, timeout) {
            Ok(ok) => {
                println!("{} {}", ok.status, ok.body.trim_end());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("authgate health: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Echo { listen } => echo(listen),
        Command::Explain {
            config,
            url,
            method,
            email,
            groups,
            subject,
            token,
            json,
        } => {
            let who = match (email, token) {
                (Some(email), _) => authgate::explain::Who::User(authgate::auth::policy::Identity {
                    subject: subject
                        .unwrap_or_else(|| email.split('@').next().unwrap_or_default().to_owned())
                        .into(),
                    email: Some(email.into()),
                    email_verified: true,
                    groups: groups.into_iter().map(Box::from).collect(),
                    ..Default::default()
                }),
                (None, Some(token)) => authgate::explain::Who::Token(token),
                (None, None) => authgate::explain::Who::Anonymous,
            };
            explain(&config, authgate::explain::Question { url, method, who }, json)
        }
        Command::Import { from } => import(from),
        Command::Session {
            command:
                SessionCommand::Revoke {
                    config,
                    sub,
                    provider,
                    email,
                },
        } => {
            let user = match (sub, provider, email) {
                (Some(subject), Some(provider), _) => authgate::session::UserKey::Subject { provider, subject },
                (_, _, Some(email)) => authgate::session::UserKey::Email(email),
                _ => {
                    eprintln!("authgate session revoke: give --sub with --provider, or --email");
                    return ExitCode::from(2);
                }
            };
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("authgate session revoke: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(authgate::session::mint::revoke(&config, &user)) {
                Ok(n) => {
                    println!("{n} sessions ended");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("authgate session revoke: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Session {
            command:
                SessionCommand::Mint {
                    config,
                    provider,
                    email,
                    subject,
                    groups,
                    ttl,
                    count,
                },
        } => {
            let req = authgate::session::mint::MintRequest {
                provider,
                email,
                subject,
                groups,
                ttl,
            };
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("authgate session mint: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(authgate::session::mint::mint(&config, &req, count)) {
                Ok(cookies) => {
                    println!("{}", cookies.join("\n"));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("authgate session mint: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn run(config: &std::path::Path, sockets: authgate::server::Sockets) -> ExitCode {
    match authgate::server::run(config, sockets) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("authgate: {e}");
            ExitCode::FAILURE
        }
    }
}

fn import(from: ImportFrom) -> ExitCode {
    let ImportFrom::Oauth2Proxy {
        out,
        host,
        strict,
        print_mapping_table,
        inputs,
    } = from;
    if print_mapping_table {
        print!("{}", authgate::import::mapping_table());
        return ExitCode::SUCCESS;
    }
    let options = authgate::import::ImportOptions {
        inputs,
        out: out.unwrap_or_default(),
        host,
    };
    match authgate::import::import(&options) {
        Ok(s) => {
            println!(
                "wrote {} apps and {} providers; {} not carried over; read {}",
                s.apps,
                s.providers,
                s.unmapped,
                s.report.display()
            );
            if strict && s.unmapped > 0 {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("authgate import: {e}");
            ExitCode::FAILURE
        }
    }
}

fn check(config: &std::path::Path, bind: bool, offline: bool) -> ExitCode {
    let snapshot = match authgate::server::check(config, offline) {
        Ok(snapshot) => snapshot,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    if bind {
        if let Err(e) = authgate::listen::check_bind(&snapshot.settings.listen) {
            eprintln!("{}: {e}", config.display());
            return ExitCode::FAILURE;
        }
    }
    println!(
        "{}: configuration OK ({} apps, {} certificates{})",
        config.display(),
        snapshot.routes.len(),
        snapshot.certs.iter().count(),
        if bind { ", every listener can be bound" } else { "" }
    );
    ExitCode::SUCCESS
}

fn explain(config: &std::path::Path, question: authgate::explain::Question, json: bool) -> ExitCode {
    let (snapshot, rejected) = match authgate::explain::load(config) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("authgate explain: {e}");
            return ExitCode::from(2);
        }
    };
    for e in rejected {
        eprintln!("authgate explain: left out, as the gateway would: {e}");
    }
    match authgate::explain::explain(&snapshot, &question) {
        Ok(answer) => {
            if json {
                println!("{}", serde_json::to_string_pretty(&answer).unwrap_or_default());
            } else {
                print!("{answer}");
            }
            if answer.admitted {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("authgate explain: {e}");
            ExitCode::from(2)
        }
    }
}

fn echo(addrs: Vec<std::net::SocketAddr>) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("authgate echo: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let mut tasks = Vec::new();
        for addr in addrs {
            match tokio::net::TcpListener::bind(addr).await {
                Ok(listener) => {
                    tracing::info!(%addr, "echo upstream listening");
                    tasks.push(tokio::spawn(
                        authgate::echo::Echo::new(addr.to_string()).serve(listener),
                    ));
                }
                Err(e) => {
                    eprintln!("authgate echo: cannot listen on {addr}: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        futures::future::join_all(tasks).await;
        ExitCode::SUCCESS
    })
}
