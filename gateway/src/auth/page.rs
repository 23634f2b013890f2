//! The pages of the sign-in flow: the sign-in page (built in or `templates_dir/sign_in.html`)
//! and its error pages (built in, with a sign-out link on the 403, or `error.html`).

use super::flow::Request;
use super::AuthSettings;
use crate::pages::{Page, Reply};
use crate::templates::html_escape;

/// Where a signed-in user the policy refuses can sign out (and then in with another account).
pub const SIGN_OUT_PATH: &str = "/oauth2/sign_out";

/// An error page of the sign-in flow: JSON when `json`, else `error.html` or the built-in
/// page; a 403 offers a sign-out link.
pub fn error(settings: &AuthSettings, page: Page, json: bool) -> Reply {
    if json {
        return Reply::page(page, true);
    }
    let sign_out = (page == Page::FORBIDDEN).then_some(SIGN_OUT_PATH);
    let body = match &settings.templates.error {
        Some(t) => t.render(&[
            ("status", itoa::Buffer::new().format(page.status)),
            ("title", page.title()),
            ("message", page.message),
            ("code", page.code),
            ("sign_out_url", sign_out.unwrap_or("")),
        ]),
        None => page.html(sign_out.map(|href| (href, "Sign out"))),
    };
    Reply::new(page.status, "text/html; charset=utf-8", body)
}

/// The sign-in page with `status`, whose button starts a login returning to `rd` (already
/// validated).
pub fn sign_in(req: &Request<'_>, rd: &str, status: u16) -> Reply {
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("rd", rd)
        .finish();
    let start = format!("/oauth2/start?{query}");
    let provider = &req.auth.provider.display_name;
    let body = match &req.settings.templates.sign_in {
        Some(t) => t.render(&[("provider", provider), ("start_url", &start), ("rd", rd)]),
        None => format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>Sign in</title>\
             <style>body{{font-family:system-ui,sans-serif;max-width:28rem;margin:6rem auto;text-align:center;color:#222}}\
             a.button{{display:inline-block;padding:.8rem 1.6rem;border-radius:.4rem;background:#2457d6;color:#fff;text-decoration:none}}\
             small{{color:#777}}</style></head><body><h1>Sign in</h1>\
             <p><a class=\"button\" href=\"{start}\">Sign in with {provider}</a></p><small>authgate</small></body></html>",
            start = html_escape(&start),
            provider = html_escape(provider),
        ),
    };
    Reply::new(status, "text/html; charset=utf-8", body)
}
