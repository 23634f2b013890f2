//! The gateway-wide request settings of a snapshot ([`Settings`]) from the main file, each
//! value checked and every error naming its field.

use std::path::Path;

use super::Settings;
use crate::client::TrustedProxies;
use crate::config::{ConfigError, ConfigErrors};

/// The settings of `gateway` (the main file at `main_path`); errors go to `errors` and the
/// defaults stand in for the fields they name.
pub(super) fn settings(
    main_path: &Path,
    gateway: &crate::config::schema::GatewayFile,
    errors: &mut ConfigErrors,
) -> Settings {
    let listen = &gateway.listen;
    let mut https_port = 443;
    match listen.https.parse::<std::net::SocketAddr>() {
        Ok(a) => https_port = a.port(),
        Err(_) => errors.push(ConfigError::new(
            main_path,
            "listen.https",
            format!("{:?} is not an address: write ip:port, e.g. 0.0.0.0:8443", listen.https),
        )),
    }
    for (field, value) in [("listen.http", &listen.http), ("listen.admin", &listen.admin)] {
        if let Some(v) = value {
            if v.parse::<std::net::SocketAddr>().is_err() {
                errors.push(ConfigError::new(
                    main_path,
                    field,
                    format!("{v:?} is not an address: write ip:port, e.g. 127.0.0.1:9090"),
                ));
            }
        }
    }
    let server = &gateway.server;
    let ranges = [
        (
            server.threads == Some(0),
            "server.threads",
            "must be at least 1 (or absent for one per CPU)",
        ),
        (
            server.max_header_bytes < 1024,
            "server.max_header_bytes",
            "must be at least 1024",
        ),
        (
            server.resolve_interval.0 < std::time::Duration::from_secs(1),
            "server.resolve_interval",
            "must be at least 1s",
        ),
        (
            server.max_uri_bytes < 256,
            "server.max_uri_bytes",
            "must be at least 256",
        ),
    ];
    for (out_of_range, field, message) in ranges {
        if out_of_range {
            errors.push(ConfigError::new(main_path, field, message));
        }
    }
    let trusted_proxies = TrustedProxies::parse(&server.trusted_proxies).unwrap_or_else(|(i, message)| {
        errors.push(ConfigError::new(
            main_path,
            format!("server.trusted_proxies[{i}]"),
            message,
        ));
        TrustedProxies::default()
    });
    Settings {
        trusted_proxies,
        listen: listen.clone(),
        redirect_https_port: gateway.public_https_port.unwrap_or(https_port),
        max_header_bytes: server.max_header_bytes,
        max_uri_bytes: server.max_uri_bytes,
        keepalive_timeout: server.keepalive_timeout.0,
        resolve_interval: server.resolve_interval.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::schema::GatewayFile;

    fn errors_of(yaml: &str) -> Vec<String> {
        let gateway: GatewayFile = serde_yaml::from_str(yaml).unwrap();
        let mut errors = ConfigErrors::default();
        settings(Path::new("gateway.yaml"), &gateway, &mut errors);
        errors.0.iter().map(|e| e.field.clone()).collect()
    }

    #[test]
    fn every_out_of_range_value_is_named_by_its_field() {
        let base = "tls: { certificates: [] }\n";
        assert!(errors_of(&format!("listen: {{ https: '0.0.0.0:8443' }}\n{base}")).is_empty());
        let bad = format!(
            "listen: {{ https: 'nope', http: 'x', admin: '1.2.3.4' }}\n{base}\
             server: {{ threads: 0, max_header_bytes: 10, max_uri_bytes: 10, resolve_interval: 100ms,\n\
             \x20 trusted_proxies: ['10.0.0.0/8', 'not-a-cidr'] }}\n"
        );
        assert_eq!(
            errors_of(&bad),
            [
                "listen.https",
                "listen.http",
                "listen.admin",
                "server.threads",
                "server.max_header_bytes",
                "server.resolve_interval",
                "server.max_uri_bytes",
                "server.trusted_proxies[1]",
            ]
        );
    }
}
