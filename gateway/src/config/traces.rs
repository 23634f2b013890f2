//! `tracing:` section of the main file: OpenTelemetry traces exported with OTLP/HTTP, off by
//! default. Read once at start (changing it needs a restart).

use std::path::Path;

use serde::Deserialize;

use super::{ConfigError, ConfigErrors};

/// `tracing:` section.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TracingSection {
    /// `true` exports a trace of every sampled request.
    pub enabled: bool,
    /// Base URL of the OTLP/HTTP receiver (a collector), e.g. `http://127.0.0.1:4318`; spans
    /// are sent to `<endpoint>/v1/traces`. Unset: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (used
    /// as is), else `OTEL_EXPORTER_OTLP_ENDPOINT`, else `http://localhost:4318`.
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the exported spans. Unset: `OTEL_SERVICE_NAME`, else `authgate`.
    pub service_name: Option<String>,
    /// Share of new traces recorded, from 0.0 to 1.0. A request whose `traceparent` comes
    /// with one follows its caller's sampled flag.
    pub sample_ratio: f64,
}

impl Default for TracingSection {
    fn default() -> Self {
        Self {
            enabled: false,
            otlp_endpoint: None,
            service_name: None,
            sample_ratio: 1.0,
        }
    }
}

impl TracingSection {
    /// The URL spans are posted to when `otlp_endpoint` is set.
    pub fn traces_url(&self) -> Option<String> {
        self.otlp_endpoint
            .as_deref()
            .map(|e| format!("{}/v1/traces", e.trim_end_matches('/')))
    }

    /// Checks the section, reporting against `main_path`.
    pub fn check(&self, main_path: &Path, errors: &mut ConfigErrors) {
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            errors.push(ConfigError::new(
                main_path,
                "tracing.sample_ratio",
                format!("{} is not a share: write a number from 0.0 to 1.0", self.sample_ratio),
            ));
        }
        if let Some(endpoint) = &self.otlp_endpoint {
            let valid = url::Url::parse(endpoint)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
            if valid.is_none() {
                errors.push(ConfigError::new(
                    main_path,
                    "tracing.otlp_endpoint",
                    format!("{endpoint:?} is not an http(s) URL: write e.g. http://127.0.0.1:4318"),
                ));
            }
        }
        if self.service_name.as_deref().is_some_and(|s| s.trim().is_empty()) {
            errors.push(ConfigError::new(
                main_path,
                "tracing.service_name",
                "is empty: remove it (default authgate) or write a name",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors_of(yaml: &str) -> Vec<String> {
        let section: TracingSection = serde_yaml::from_str(yaml).unwrap();
        let mut errors = ConfigErrors::default();
        section.check(Path::new("gateway.yaml"), &mut errors);
        errors.0.into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn defaults_are_off_and_endpoints_get_the_traces_path() {
        let off = TracingSection::default();
        assert!(!off.enabled);
        assert_eq!(off.traces_url(), None);
        let on: TracingSection = serde_yaml::from_str("{ enabled: true, otlp_endpoint: \"http://c:4318/\" }").unwrap();
        assert_eq!(on.traces_url().as_deref(), Some("http://c:4318/v1/traces"));
        assert_eq!(on.sample_ratio, 1.0);
        assert!(errors_of("{ enabled: true, otlp_endpoint: \"https://c\", sample_ratio: 0 }").is_empty());
    }

    #[test]
    fn bad_values_name_their_field() {
        assert_eq!(errors_of("{ sample_ratio: 1.5 }"), ["tracing.sample_ratio"]);
        assert_eq!(errors_of("{ otlp_endpoint: \"c:4318\" }"), ["tracing.otlp_endpoint"]);
        assert_eq!(
            errors_of("{ otlp_endpoint: \"udp://c:4318\" }"),
            ["tracing.otlp_endpoint"]
        );
        assert_eq!(errors_of("{ service_name: \" \" }"), ["tracing.service_name"]);
        assert!(serde_yaml::from_str::<TracingSection>("{ endpoint: x }").is_err());
    }
}
