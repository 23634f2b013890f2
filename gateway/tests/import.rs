//! `authgate import oauth2-proxy`: the real binary on oauth2-proxy's own examples and on a
//! sidecar fleet; outputs pass `authgate check`; no secret value is ever written; `--strict`;
//! and a round trip: the imported configuration, served by authgate with a real OpenID
//! provider, admits and refuses the users the sidecar options admitted and refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::idp::{browse, browser, Idp};
use common::{binary, ConfigDir, Gateway, TestCa, Upstream};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/import")
}

/// Runs `authgate import oauth2-proxy --out OUT ARGS...`: (exit code, stdout + stderr).
fn import(out: &Path, args: &[&str]) -> (i32, String) {
    let o = Command::new(binary())
        .args(["import", "oauth2-proxy", "--out"])
        .arg(out)
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.code().unwrap_or(-1), text)
}

fn fx(rel: &str) -> String {
    fixtures().join(rel).display().to_string()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every `*_env: NAME` of a main file.
fn env_names(main: &str) -> Vec<String> {
    main.lines()
        .filter_map(|l| l.split_once("_env: ").map(|(_, v)| v.trim().to_owned()))
        .collect()
}

/// Runs `authgate check` on an import's output: certificates are made for the files it names,
/// every `*_env` variable gets a dummy value, and cluster DNS names (which do not resolve on
/// the test machine) are pointed at loopback.
fn check(out: &Path) {
    let ca = TestCa::new();
    let main = read(&out.join("gateway.yaml"));
    let doc: serde_yaml::Value = serde_yaml::from_str(&main).unwrap();
    std::fs::create_dir_all(out.join("certs")).unwrap();
    for c in doc["tls"]["certificates"].as_sequence().unwrap() {
        let (crt, key) = ca.issue(&["*.example.com", "example.com"]);
        std::fs::write(out.join(c["cert_file"].as_str().unwrap()), crt).unwrap();
        std::fs::write(out.join(c["key_file"].as_str().unwrap()), key).unwrap();
    }
    let re = regex::Regex::new(r"[a-z0-9-]+\.[a-z0-9-]+\.svc\.cluster\.local").unwrap();
    for entry in std::fs::read_dir(out.join("apps.d")).unwrap() {
        let path = entry.unwrap().path();
        let text = read(&path);
        std::fs::write(&path, re.replace_all(&text, "127.0.0.1").as_bytes()).unwrap();
    }
    let mut cmd = Command::new(binary());
    cmd.args(["check", "-c"]).arg(out.join("gateway.yaml"));
    for var in env_names(&main) {
        let value = if var == "AUTHGATE_COOKIE_SECRETS" {
            common::authenv::cookie_key()
        } else {
            "dummy".to_owned()
        };
        cmd.env(var, value);
    }
    let o = cmd.output().unwrap();
    assert!(
        o.status.success(),
        "authgate check failed on {}:\n{}{}",
        out.display(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Every secret value the fixtures hold (Secret data decoded, literals in files).
fn fixture_secrets() -> Vec<String> {
    use base64::Engine;
    let mut out = vec![
        "GOCSPX-dummy-literal-wiki-secret".to_owned(),
        "dummy-entra-secret".to_owned(),
        "dummy-grafana-cookie-secret-32by".to_owned(),
        "dummy-app1-env-secret".to_owned(),
        "dummy-app1-cookie-secret-0000000".to_owned(),
        "dummy-clean-secret".to_owned(),
        "dummy-clean-cookie-secret-000000".to_owned(),
        "OQINaROshtE9TcZkNAm-5Zs2Pv3xaWytBmc5W7sPX7w=".to_owned(),
        "b2F1dGgyLXByb3h5LWNsaWVudC1zZWNyZXQK".to_owned(),
        "72341b6d-7065-4518-a0e4-50ee15025608".to_owned(),
    ];
    let fleet = read(&fixtures().join("fleet/billing.yaml"));
    for line in fleet.lines() {
        if let Some((_, v)) = line.split_once("-secret: ").or_else(|| line.split_once("-password: ")) {
            let v = v.trim();
            out.push(v.to_owned());
            let decoded = base64::engine::general_purpose::STANDARD.decode(v).unwrap();
            out.push(String::from_utf8(decoded).unwrap());
        }
    }
    out
}

fn assert_no_secrets(out: &Path) {
    let secrets = fixture_secrets();
    let mut stack = vec![out.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "md") {
                let text = read(&path);
                for s in &secrets {
                    assert!(!text.contains(s.as_str()), "secret {s:?} written to {}", path.display());
                }
            }
        }
    }
}

/// Compares `out`'s YAML files with `expected/<name>/` (`AUTHGATE_BLESS=1` rewrites them).
fn golden(out: &Path, name: &str) {
    let expected = fixtures().join("expected").join(name);
    let mut files = vec![PathBuf::from("gateway.yaml")];
    let mut apps: Vec<PathBuf> = std::fs::read_dir(out.join("apps.d"))
        .unwrap()
        .map(|e| PathBuf::from("apps.d").join(e.unwrap().file_name()))
        .collect();
    apps.sort();
    files.extend(apps);
    if std::env::var_os("AUTHGATE_BLESS").is_some() {
        let _ = std::fs::remove_dir_all(&expected);
        std::fs::create_dir_all(expected.join("apps.d")).unwrap();
        for f in &files {
            std::fs::copy(out.join(f), expected.join(f)).unwrap();
        }
    }
    let mut want: Vec<PathBuf> = std::fs::read_dir(expected.join("apps.d"))
        .unwrap()
        .map(|e| PathBuf::from("apps.d").join(e.unwrap().file_name()))
        .collect();
    want.sort();
    assert_eq!(files[1..].to_vec(), want, "app files");
    for f in &files {
        assert_eq!(
            read(&out.join(f)),
            read(&expected.join(f)),
            "{} differs from expected/{name}",
            f.display()
        );
    }
}

#[test]
fn fleet_of_sidecars_matches_the_golden_output_and_passes_check() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let (code, text) = import(&out, &[&fx("fleet")]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("wrote 5 apps and 4 providers"), "{text}");
    golden(&out, "fleet");
    assert_no_secrets(&out);
    let report = read(&out.join("import-report.md"));
    for needle in [
        // secrets: which variable, from where
        "| `AUTHGATE_GITHUB_CLIENT_SECRET` | client secret of provider `github` (client id `Iv1.fleetgithub0001`) | Deployment billing/billing container oauth2-proxy: key `client-secret` of Secret `oauth2-proxy` (namespace `billing`)",
        "key `OAUTH2_PROXY_CLIENT_SECRET` of Secret `grafana-oauth2-proxy` (namespace `monitoring`)",
        "written literally in Deployment docs/wiki container auth-proxy: env OAUTH2_PROXY_CLIENT_SECRET",
        "key `cookie-secret` of Secret `wiki-oauth2-proxy` (namespace `docs`)",
        "| `AUTHGATE_REDIS_PASSWORD` |",
        // cookie secrets differ: users sign in again
        "5 different cookie secrets across the sidecars",
        "every user signs in once after the move",
        // what to do
        "kubectl -n istio-system get secret wildcard-example-com",
        "Service billing/billing has no port for the app container's port 8080",
        "- `github`: `https://billing.example.com/oauth2/callback`, `https://reports.example.com/oauth2/callback`",
        // not carried over, by name
        "| Deployment shop/shop container oauth2-proxy | `upstreams` | path route /api/ → 127.0.0.1:9000 is inside the pod: give that port a Service",
        "| `reverse_proxy` | true | not needed | server.trusted_proxies |",
        "| `whitelist_domains` | .example.com | mapped",
        // every option listed
        "| `cookie_samesite` | lax |",
        "| `config` | /etc/oauth2-proxy/oauth2-proxy.cfg | not needed |",
    ] {
        assert!(report.contains(needle), "report lacks {needle:?}:\n{report}");
    }
    check(&out);
}

#[test]
fn strict_fails_when_anything_is_not_carried_over() {
    let dir = tempfile::tempdir().unwrap();
    let (code, text) = import(&dir.path().join("fleet"), &["--strict", &fx("fleet")]);
    assert_eq!(code, 1, "{text}");
    assert!(
        dir.path().join("fleet/gateway.yaml").exists(),
        "the output is written anyway"
    );
    let (code, text) = import(&dir.path().join("clean"), &["--strict", &fx("single/clean.cfg")]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("0 not carried over"), "{text}");
    let main = read(&dir.path().join("clean/gateway.yaml"));
    assert!(
        main.contains("server:\n  trusted_proxies:\n  - 10.0.0.1/32\n  - 192.168.0.0/16\n"),
        "{main}"
    );
    check(&dir.path().join("clean"));
}

#[test]
fn oauth2_proxy_examples_import_and_pass_check() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &[&str], &[&str])] = &[
        // contrib/oauth2-proxy.service.example + the cfg its ExecStart names, one process
        (
            "dex",
            &["upstream/dex"],
            &["oauth2-proxy.cfg, ", "oauth2-proxy.service", "is not https://"],
        ),
        (
            "keycloak",
            &["upstream/keycloak.cfg"],
            &[
                "| `provider_display_name` | Keycloak | mapped",
                "| `cookie_secure` | false | mapped",
            ],
        ),
        (
            "nginx",
            &["upstream/nginx.cfg"],
            &[
                "static://200: static:// upstreams are not supported",
                "| `reverse_proxy` | true | not needed |",
                "is not https://",
            ],
        ),
        (
            "alpha",
            &["upstream/alpha"],
            &[
                "oauth2-proxy-alpha-config.cfg, ",
                "| `set_xauthrequest` | true | mapped",
            ],
        ),
        (
            "example",
            &["upstream/oauth2-proxy.cfg.example"],
            &["no host: neither routing nor redirect_url names one"],
        ),
        (
            "dashboard",
            &["upstream/kubernetes-dashboard-ingress.yaml"],
            &["reaches no oauth2-proxy among the inputs"],
        ),
    ];
    for (name, inputs, needles) in cases {
        let out = dir.path().join(name);
        let args: Vec<String> = inputs.iter().map(|i| fx(i)).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, text) = import(&out, &args);
        assert_eq!(code, 0, "{name}: {text}");
        let report = read(&out.join("import-report.md"));
        for n in *needles {
            assert!(report.contains(n), "{name}: report lacks {n:?}:\n{report}");
        }
        assert_no_secrets(&out);
        check(&out);
    }
    // The local-environment examples talk to their providers over plain HTTP: nothing public
    // is written for them, and the report says why.
    let report = read(&dir.path().join("keycloak/import-report.md"));
    assert!(
        report.contains("issuer http://keycloak.localtest.me:9080/realms/oauth2-proxy is not https://"),
        "{report}"
    );
    assert_eq!(
        std::fs::read_dir(dir.path().join("keycloak/apps.d")).unwrap().count(),
        0
    );
}

#[test]
fn ingress_nginx_central_proxy_becomes_one_provider_for_every_auth_url_ingress() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let (code, text) = import(&out, &[&fx("nginx-central")]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("wrote 2 apps and 1 providers; 0 not carried over"),
        "{text}"
    );
    golden(&out, "nginx-central");
    let report = read(&out.join("import-report.md"));
    assert!(
        report.contains("the central proxy's own host auth.example.com is not needed"),
        "{report}"
    );
    check(&out);
}

#[test]
fn one_sidecar_from_a_shell_script_and_an_env_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let (code, text) = import(&out, &[&fx("single/app1.sh"), &fx("single/app1.env")]);
    assert_eq!(code, 0, "{text}");
    let app = read(&out.join("apps.d/app1.yaml"));
    for needle in [
        "host: app1.example.com",
        "- 10.0.0.12:8080",
        "  - example.com\n  - partner.example.org\n",
        "  - GET=^/healthz$\n  - GET=^/metrics\n  - ^/public/\n",
    ] {
        assert!(app.contains(needle), "app lacks {needle:?}:\n{app}");
    }
    let report = read(&out.join("import-report.md"));
    assert!(
        report.contains("`htpasswd_file` | unsupported: No local users"),
        "{report}"
    );
    assert!(report.contains("app1.env:2 (move it into a Secret"), "{report}");
    assert_no_secrets(&out);
    check(&out);

    // --host names the host of a single sidecar.
    let other = dir.path().join("other");
    let (code, text) = import(&other, &["--host", "portal.example.com", &fx("single/clean.cfg")]);
    assert_eq!(code, 0, "{text}");
    assert!(read(&other.join("apps.d/clean.yaml")).contains("host: portal.example.com\n"));
}

#[test]
fn the_mapping_table_printed_is_the_one_in_the_migration_guide() {
    let o = Command::new(binary())
        .args(["import", "oauth2-proxy", "--print-mapping-table"])
        .output()
        .unwrap();
    assert!(o.status.success());
    let table = String::from_utf8(o.stdout).unwrap();
    let guide = read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/migration.md"));
    assert!(table.lines().count() > 150, "{table}");
    assert!(guide.contains(&table), "docs/migration.md does not embed the table");
}

#[test]
fn bad_inputs_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("notes.txt");
    std::fs::write(&bad, "hello world\n").unwrap();
    let (code, text) = import(&dir.path().join("o1"), &[bad.to_str().unwrap()]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("notes.txt: not an oauth2-proxy configuration"), "{text}");
    let broken = dir.path().join("broken.cfg");
    std::fs::write(&broken, "client_id = \"x\"\nemail_domains = [\"a\"\n").unwrap();
    let (code, text) = import(&dir.path().join("o2"), &[broken.to_str().unwrap()]);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("broken.cfg: line 2: array of email_domains is not closed"),
        "{text}"
    );
    let (code, text) = import(
        &dir.path().join("o3"),
        &[dir.path().join("missing.cfg").to_str().unwrap()],
    );
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("missing.cfg"), "{text}");
}

/// The sidecars' options, imported and served: the same users are admitted and refused on the
/// same paths.
#[tokio::test(flavor = "multi_thread")]
async fn round_trip_admits_and_refuses_what_the_sidecars_did() {
    let upstream = Upstream::start("app").await;
    let ca = TestCa::new();
    let ports = ConfigDir::new();
    let hosts = ["app1.example.com", "admin.example.com"];
    let origins: Vec<String> = hosts
        .iter()
        .map(|h| format!("https://{h}:{}", ports.https.port()))
        .collect();
    let idp = Idp::start(&ca, "gateway", "corp-test-secret", &origins, serde_json::json!({}));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), ca.cert_pem()).unwrap();
    let common = format!(
        "provider = \"oidc\"\noidc_issuer_url = \"{}\"\nclient_id = \"gateway\"\nclient_secret = \"corp-test-secret\"\n\
         provider_ca_files = [\"{}\"]\nupstreams = [\"http://{}/\"]\ncookie_secret = \"dummy-clean-cookie-secret-000000\"\n\
         cookie_domains = [\".example.com\"]\nhttp_address = \"0.0.0.0:4180\"\n",
        idp.issuer,
        dir.path().join("ca.pem").display(),
        upstream.addr
    );
    std::fs::write(
        dir.path().join("app1.cfg"),
        format!(
            "{common}redirect_url = \"https://app1.example.com/oauth2/callback\"\nemail_domains = [\"example.com\"]\n\
             skip_auth_routes = [\"GET=^/healthz$\", \"^/public/\"]\napi_routes = [\"^/api/\"]\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("admin.cfg"),
        format!("{common}redirect_url = \"https://admin.example.com/oauth2/callback\"\nemail_domains = [\"*\"]\nallowed_groups = [\"admins\"]\n"),
    )
    .unwrap();
    let out = dir.path().join("out");
    let (code, text) = import(
        &out,
        &[
            "--strict",
            dir.path().join("app1.cfg").to_str().unwrap(),
            dir.path().join("admin.cfg").to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("wrote 2 apps and 1 providers"), "{text}");
    // Adjust what the importer leaves to the user: listeners and the certificate.
    let main = read(&out.join("gateway.yaml"))
        .replace("0.0.0.0:8443", &ports.https.to_string())
        .replace("0.0.0.0:8080", &ports.http.to_string())
        .replace("127.0.0.1:9090", &ports.admin.to_string());
    std::fs::write(out.join("gateway.yaml"), main).unwrap();
    std::fs::create_dir_all(out.join("certs")).unwrap();
    let (crt, key) = ca.issue(&["*.example.com"]);
    std::fs::write(out.join("certs/tls.crt"), crt).unwrap();
    std::fs::write(out.join("certs/tls.key"), key).unwrap();
    let cookie = common::authenv::cookie_key();
    let env = [
        ("AUTHGATE_COOKIE_SECRETS", cookie.as_str()),
        ("AUTHGATE_OIDC_CLIENT_SECRET", "corp-test-secret"),
    ];
    let gw = Gateway::start_file(&out.join("gateway.yaml"), ports.https, ports.http, ports.admin, &env).await;
    let url = |host: &str, path: &str| format!("https://{host}:{}{path}", ports.https.port());

    // Without a session: skip routes pass, API routes get 401, the rest goes to the provider.
    let anon = browser(&ca, gw.https, &hosts);
    for (path, status) in [
        ("/healthz", 200),
        ("/public/x", 200),
        ("/api/x", 401),
        ("/private", 302),
    ] {
        let resp = anon.get(url("app1.example.com", path)).send().await.unwrap();
        assert_eq!(resp.status(), status, "{path}: {}", gw.logs());
    }
    let post = anon
        .post(url("app1.example.com", "/healthz"))
        .send()
        .await
        .unwrap()
        .status();
    assert_ne!(post, 200, "the skip route is for GET only");

    // email_domains = example.com on app1; allowed_groups = admins on admin.
    for (host, user, status) in [
        ("app1.example.com", "alice", 200),
        ("app1.example.com", "bob", 200),
        ("app1.example.com", "eve", 403),
        ("app1.example.com", "uma", 403),
        ("admin.example.com", "alice", 200),
        ("admin.example.com", "bob", 403),
    ] {
        let b = browser(&ca, gw.https, &hosts);
        let (resp, visited) = browse(&b, &url(host, "/private"), user, &format!("{user}-pw")).await;
        assert_eq!(
            resp.status(),
            status,
            "{user} on {host} via {visited:?}: {}\n{}",
            gw.logs(),
            idp.logs()
        );
        if status == 200 {
            let echo: serde_json::Value = resp.json().await.unwrap();
            assert_eq!(echo["headers"]["x-forwarded-email"][0], format!("{user}@example.com"));
        }
    }
}

#[test]
fn several_upstreams_become_path_routes_that_pass_check() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("oauth2-proxy.cfg");
    std::fs::write(
        &cfg,
        "provider = \"oidc\"\noidc_issuer_url = \"https://idp.example.com\"\nclient_id = \"c\"\n\
         client_secret = \"s\"\ncookie_secret = \"0123456789abcdef0123456789abcdef\"\n\
         redirect_url = \"https://shop.example.com/oauth2/callback\"\nemail_domains = [\"example.com\"]\n\
         upstreams = [\"http://127.0.0.1:8080/\", \"http://127.0.0.1:9000/api/\", \"http://127.0.0.1:9100/static\"]\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    let (code, text) = import(&out, &[cfg.to_str().unwrap()]);
    assert_eq!(code, 0, "{text}");
    let app: serde_yaml::Value = serde_yaml::from_str(&read(&out.join("apps.d/shop.yaml"))).unwrap();
    assert_eq!(app["upstreams"][0].as_str(), Some("127.0.0.1:8080"), "{app:?}");
    let routes = app["routes"].as_sequence().unwrap();
    let pairs: Vec<(&str, &str)> = routes
        .iter()
        .map(|r| (r["path_prefix"].as_str().unwrap(), r["upstreams"][0].as_str().unwrap()))
        .collect();
    assert_eq!(pairs, [("/api/", "127.0.0.1:9000"), ("/static", "127.0.0.1:9100")]);
    let report = read(&out.join("import-report.md"));
    assert!(report.contains("authgate's route matches whole segments"), "{report}");
    check(&out);
}

#[test]
fn a_host_split_by_path_across_sidecars_becomes_one_app_with_routes_in_any_input_order() {
    let fixture = read(&fixtures().join("split-host/store.yaml"));
    let dir = tempfile::tempdir().unwrap();
    let reversed = dir.path().join("reversed.yaml");
    let mut docs: Vec<&str> = fixture.split("\n---\n").collect();
    docs.reverse();
    std::fs::write(&reversed, docs.join("\n---\n")).unwrap();
    let mut apps = Vec::new();
    for (name, input) in [
        ("forward", fx("split-host/store.yaml")),
        ("reversed", reversed.display().to_string()),
    ] {
        let out = dir.path().join(name);
        let (code, text) = import(&out, &[&input]);
        assert_eq!(code, 0, "{text}");
        assert!(text.contains("wrote 1 apps"), "{name}: {text}");
        let app: serde_yaml::Value = serde_yaml::from_str(&read(&out.join("apps.d/web.yaml"))).unwrap();
        assert_eq!(app["upstreams"][0].as_str(), Some("web.store.svc.cluster.local:8080"));
        let route = &app["routes"][0];
        assert_eq!(route["path_prefix"].as_str(), Some("/api"));
        assert_eq!(route["upstreams"][0].as_str(), Some("api.store.svc.cluster.local:9000"));
        assert_eq!(
            route["auth"]["allowed_groups"][0].as_str(),
            Some("store-api"),
            "the api sidecar's own policy"
        );
        check(&out);
        apps.push(app);
    }
    assert_eq!(apps[0], apps[1], "the same result whatever the order");
}
