//! Who may enter an app: strict email parsing and the compiled access policy.
//!
//! A [`Policy`] is compiled once from an app's [`PolicySpec`] and checked on every request
//! against the signed-in user's [`Identity`]. Up to three rules apply, and every rule that
//! applies must pass (AND):
//!
//! - **Email** (when `email_domains` or `allowed_emails` is non-empty): the identity's email
//!   must be present, verified by the identity provider (`email_verified`), parse strictly as
//!   an [`Email`], and either be in `allowed_emails` (case-insensitive) or have a domain
//!   matching an `email_domains` entry: `*` any domain, `example.com` exactly that domain
//!   (case-insensitive), `*.example.com` any subdomain at any depth but not `example.com`
//!   itself.
//! - **Groups** (when `allowed_groups` is non-empty): at least one of the identity's groups is
//!   in the list, compared exactly (IdP group ids are case-sensitive).
//! - **GitHub** (when `github_orgs` or `github_teams` is non-empty): the identity belongs to
//!   one of the orgs or one of the teams (`org/team`, by slug), compared case-insensitively.
//!
//! A policy with no rule at all does not compile: access fails closed. To admit every
//! signed-in user write `email_domains: ["*"]`; note that this still requires a verified,
//! well-formed email address.
//!
//! Email syntax is deliberately stricter than RFC 5322 (see [`Email::parse`]): quoted local
//! parts, comments, IP-literal domains, non-ASCII characters (homoglyphs such as a Cyrillic
//! `а`) and trailing dots are refused, so that what the allow lists compare is unambiguous.
//!
//! [`Policy::check`] does not allocate for addresses and names up to 256 bytes: configured
//! values are lower-cased at compile time and identity values are lower-cased into a stack
//! buffer for set look-ups.

use std::collections::HashSet;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest local part (RFC 5321).
const MAX_LOCAL_LEN: usize = 64;
/// Longest domain (RFC 1035).
const MAX_DOMAIN_LEN: usize = 253;
/// Longest address (RFC 5321 path limit less the angle brackets).
const MAX_EMAIL_LEN: usize = 254;
/// Longest GitHub login (org or user name).
const MAX_GITHUB_LOGIN_LEN: usize = 39;
/// Longest GitHub team slug accepted in configuration.
const MAX_GITHUB_TEAM_LEN: usize = 100;
/// Size of the stack buffer used to lower-case identity values for look-ups.
const LOWERCASE_BUF_LEN: usize = 256;

/// A strictly parsed email address: the local part as given and the domain lower-cased.
///
/// Equality compares the local part case-sensitively; allow lists compare case-insensitively.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email {
    /// `local@domain`, domain lower-cased.
    address: String,
    /// Byte index of the `@` in `address`.
    at: usize,
}

impl Email {
    /// Parses `s` strictly, or returns `None`.
    ///
    /// Accepted: exactly one `@`; a local part of 1–64 ASCII characters from the dot-atom set
    /// (letters, digits, ``!#$%&'*+/=?^_`{|}~-``, and dots that are not leading, trailing or
    /// doubled); a domain of at least two dot-separated labels, each 1–63 letters, digits or
    /// hyphens, not starting or ending with a hyphen, at most 253 bytes, whose last label is
    /// not all digits; 254 bytes at most in all. No quotes, spaces, control characters,
    /// non-ASCII characters, IP literals or trailing dot.
    pub fn parse(s: &str) -> Option<Email> {
        let (local, domain) = split_email(s)?;
        let mut address = String::with_capacity(s.len());
        address.push_str(local);
        address.push('@');
        address.push_str(&domain.to_ascii_lowercase());
        Some(Email {
            address,
            at: local.len(),
        })
    }

    /// The domain, lower-cased.
    pub fn domain(&self) -> &str {
        self.address.get(self.at + 1..).unwrap_or_default()
    }

    /// The local part, as given.
    pub fn local_part(&self) -> &str {
        self.address.get(..self.at).unwrap_or_default()
    }

    /// The whole address: local part as given, `@`, domain lower-cased.
    pub fn as_str(&self) -> &str {
        &self.address
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.address)
    }
}

/// The signed-in user, as the identity provider described them. Serialisable, as it is kept
/// in the session. Its strings and lists are boxed slices, not `String`s and `Vec`s: a cached
/// session holds them for its whole life and never grows them, and each `Box<str>` is 8 bytes
/// smaller than a `String`, each list allocated to its exact length (see
/// docs/performance.md, "Smaller cached sessions"). The JSON is the same as with `String`s and
/// `Vec`s.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The provider's stable user id (`sub`).
    pub subject: Box<str>,
    /// The email address, as the provider gave it.
    pub email: Option<Box<str>>,
    /// Whether the provider vouches for the email address.
    pub email_verified: bool,
    /// The provider's preferred user name, for display and logs.
    pub preferred_username: Option<Box<str>>,
    /// Group ids or names from the provider (case-sensitive).
    #[serde(deserialize_with = "exact_list_de")]
    pub groups: Box<[Box<str>]>,
    /// GitHub organisations the user belongs to (logins).
    #[serde(deserialize_with = "exact_list_de")]
    pub github_orgs: Box<[Box<str>]>,
    /// GitHub teams the user belongs to, as `org/team-slug`.
    #[serde(deserialize_with = "exact_list_de")]
    pub github_teams: Box<[Box<str>]>,
}

/// An identity's list in an allocation of exactly its length. A `Vec` filled item by item
/// (as when deserialising a JSON array) has grown past it (to 4 entries for 1 to 4), and
/// shrinking it in place keeps the allocator's larger block: copied into a fresh one, two
/// groups take 32 bytes instead of 96.
pub(crate) fn exact_list(grown: Vec<Box<str>>) -> Box<[Box<str>]> {
    if grown.capacity() == grown.len() {
        return grown.into_boxed_slice();
    }
    let mut exact = Vec::with_capacity(grown.len());
    exact.extend(grown);
    exact.into_boxed_slice()
}

fn exact_list_de<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Box<[Box<str>]>, D::Error> {
    Vec::<Box<str>>::deserialize(d).map(exact_list)
}

impl Identity {
    /// The user's id for logs and `X-Auth-Request-User`: the provider's subject.
    pub fn user(&self) -> &str {
        &self.subject
    }
}

/// The access rules of one app, as configured (see [`Policy::compile`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct PolicySpec<'a> {
    /// `*`, `example.com` or `*.example.com` entries.
    pub email_domains: &'a [String],
    /// Email addresses admitted whatever their domain.
    pub allowed_emails: &'a [String],
    /// The addresses of `authenticated_emails_file` (already validated), when one is set: an
    /// email rule exists even when the file is empty.
    pub emails_file: Option<&'a [Email]>,
    /// Group ids admitted (exact match).
    pub allowed_groups: &'a [String],
    /// GitHub organisations admitted.
    pub github_orgs: &'a [String],
    /// GitHub teams admitted, as `org/team-slug`.
    pub github_teams: &'a [String],
}

/// The outcome of [`Policy::check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The user may enter.
    Allow,
    /// The user may not enter, for this reason.
    Deny(DenyReason),
}

/// Why a signed-in user was refused. `Display` gives a sentence for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyReason {
    /// The policy has an email rule and the identity has no email address.
    NoEmail,
    /// The identity provider does not vouch for the email address.
    EmailNotVerified,
    /// The email address is malformed, or neither listed nor in an allowed domain.
    EmailNotAllowed,
    /// The user is in none of the allowed groups.
    NotInAllowedGroup,
    /// The user is in none of the allowed GitHub organisations or teams.
    NotInAllowedGithubOrgOrTeam,
}

impl fmt::Display for DenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DenyReason::NoEmail => "the identity provider supplied no email address, and this app requires one",
            DenyReason::EmailNotVerified => "the identity provider has not verified the user's email address",
            DenyReason::EmailNotAllowed => {
                "the user's email address is malformed or is neither an allowed address nor in an allowed domain"
            }
            DenyReason::NotInAllowedGroup => "the user is not a member of any allowed group",
            DenyReason::NotInAllowedGithubOrgOrTeam => {
                "the user is not a member of any allowed GitHub organisation or team"
            }
        })
    }
}

/// A compiled access policy.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The email rule, when `email_domains` or `allowed_emails` is non-empty.
    email: Option<EmailRule>,
    /// The group rule, when `allowed_groups` is non-empty.
    groups: Option<HashSet<String>>,
    /// The GitHub rule, when `github_orgs` or `github_teams` is non-empty.
    github: Option<GithubRule>,
}

#[derive(Debug, Clone, Default)]
struct EmailRule {
    /// `*` was listed.
    any_domain: bool,
    /// Exact domains, lower-cased.
    domains: HashSet<String>,
    /// `*.example.com` entries as `.example.com`, lower-cased.
    domain_suffixes: Vec<String>,
    /// Whole addresses, lower-cased.
    emails: HashSet<String>,
}

#[derive(Debug, Clone, Default)]
struct GithubRule {
    /// Organisation logins, lower-cased.
    orgs: HashSet<String>,
    /// `org/team` pairs, lower-cased.
    teams: HashSet<String>,
}

impl Policy {
    /// Compiles a policy, or lists every invalid entry as `(field, message)`.
    ///
    /// Fields are named as the configuration keys (oauth2-proxy's names), with the entry's
    /// index: `email_domains[2]`, `allowed_emails[0]`, `allowed_groups[1]`, `github_org[0]`,
    /// `github_team[3]`; the "no rule at all" error names `email_domains`.
    ///
    /// A domain entry must be `*`, `example.com` or `*.example.com`; `allowed_emails` entries
    /// must parse as [`Email`]; `allowed_groups` entries must be non-empty; `github_orgs`
    /// entries must be GitHub logins; `github_teams` entries must be `org/team`. At least one
    /// of the five lists must be non-empty (fail closed: to admit every signed-in user say
    /// `email_domains: ["*"]`).
    pub fn compile(spec: &PolicySpec) -> Result<Policy, Vec<(String, String)>> {
        let mut errors: Vec<(String, String)> = Vec::new();

        let email = if spec.email_domains.is_empty() && spec.allowed_emails.is_empty() && spec.emails_file.is_none() {
            None
        } else {
            let mut rule = EmailRule::default();
            for e in spec.emails_file.unwrap_or_default() {
                rule.emails.insert(e.as_str().to_ascii_lowercase());
            }
            for (i, entry) in spec.email_domains.iter().enumerate() {
                let field = format!("email_domains[{i}]");
                if entry == "*" {
                    rule.any_domain = true;
                } else if let Some(parent) = entry.strip_prefix("*.") {
                    if valid_domain(parent) {
                        rule.domain_suffixes.push(format!(".{}", parent.to_ascii_lowercase()));
                    } else {
                        errors.push((field, domain_error(entry)));
                    }
                } else if valid_domain(entry) {
                    rule.domains.insert(entry.to_ascii_lowercase());
                } else {
                    errors.push((field, domain_error(entry)));
                }
            }
            for (i, entry) in spec.allowed_emails.iter().enumerate() {
                match Email::parse(entry) {
                    Some(e) => {
                        rule.emails.insert(e.as_str().to_ascii_lowercase());
                    }
                    None => errors.push((
                        format!("allowed_emails[{i}]"),
                        format!(
                            "{entry:?} is not a plain email address such as \"alice@example.com\" (ASCII only, \
                             no quotes, spaces or display names)"
                        ),
                    )),
                }
            }
            Some(rule)
        };

        let groups = if spec.allowed_groups.is_empty() {
            None
        } else {
            let mut set = HashSet::new();
            for (i, group) in spec.allowed_groups.iter().enumerate() {
                if group.is_empty() {
                    errors.push((
                        format!("allowed_groups[{i}]"),
                        "a group must not be empty; give the group id exactly as the identity provider sends it"
                            .to_owned(),
                    ));
                } else {
                    set.insert(group.clone());
                }
            }
            Some(set)
        };

        let github = if spec.github_orgs.is_empty() && spec.github_teams.is_empty() {
            None
        } else {
            let mut rule = GithubRule::default();
            for (i, org) in spec.github_orgs.iter().enumerate() {
                if valid_github_login(org) {
                    rule.orgs.insert(org.to_ascii_lowercase());
                } else {
                    errors.push((
                        format!("github_org[{i}]"),
                        format!(
                            "{org:?} is not a GitHub organisation name: use letters, digits and single hyphens, \
                             such as \"my-org\""
                        ),
                    ));
                }
            }
            for (i, team) in spec.github_teams.iter().enumerate() {
                match team.split_once('/') {
                    Some((org, slug)) if valid_github_login(org) && valid_team_slug(slug) => {
                        rule.teams.insert(team.to_ascii_lowercase());
                    }
                    _ => errors.push((
                        format!("github_team[{i}]"),
                        format!(
                            "{team:?} is not \"org/team\": give the organisation and the team slug separated by one \
                             '/', such as \"my-org/platform-team\""
                        ),
                    )),
                }
            }
            Some(rule)
        };

        if email.is_none() && groups.is_none() && github.is_none() {
            errors.push((
                "email_domains".to_owned(),
                "no access rule is set, so nobody could enter: set at least one of email_domains, allowed_emails, \
                 allowed_groups, github_org or github_team (to admit every signed-in user with a verified email \
                 address, set email_domains: [\"*\"])"
                    .to_owned(),
            ));
        }

        if errors.is_empty() {
            Ok(Policy { email, groups, github })
        } else {
            Err(errors)
        }
    }

    /// Decides whether `who` may enter: every applicable rule must pass. The first failing
    /// rule, in the order email, groups, GitHub, gives the reason.
    pub fn check(&self, who: &Identity) -> Decision {
        if let Some(rule) = &self.email {
            if let Err(reason) = rule.check(who) {
                return Decision::Deny(reason);
            }
        }
        if let Some(groups) = &self.groups {
            if !who.groups.iter().any(|g| groups.contains(&**g)) {
                return Decision::Deny(DenyReason::NotInAllowedGroup);
            }
        }
        if let Some(rule) = &self.github {
            let in_org = who
                .github_orgs
                .iter()
                .any(|o| contains_ignore_ascii_case(&rule.orgs, o));
            if !in_org
                && !who
                    .github_teams
                    .iter()
                    .any(|t| contains_ignore_ascii_case(&rule.teams, t))
            {
                return Decision::Deny(DenyReason::NotInAllowedGithubOrgOrTeam);
            }
        }
        Decision::Allow
    }
}

impl EmailRule {
    fn check(&self, who: &Identity) -> Result<(), DenyReason> {
        let email = match who.email.as_deref() {
            Some(e) if !e.is_empty() => e,
            _ => return Err(DenyReason::NoEmail),
        };
        if !who.email_verified {
            return Err(DenyReason::EmailNotVerified);
        }
        let (_, domain) = split_email(email).ok_or(DenyReason::EmailNotAllowed)?;
        let allowed = contains_ignore_ascii_case(&self.emails, email)
            || self.any_domain
            || contains_ignore_ascii_case(&self.domains, domain)
            || self
                .domain_suffixes
                .iter()
                .any(|s| ends_with_ignore_ascii_case(domain, s));
        if allowed {
            Ok(())
        } else {
            Err(DenyReason::EmailNotAllowed)
        }
    }
}

/// The message for a bad `email_domains` entry.
fn domain_error(entry: &str) -> String {
    format!(
        "{entry:?} is not a domain entry: use \"*\" (any domain), \"example.com\" (exactly that domain) or \
         \"*.example.com\" (any subdomain of it); a domain needs at least two labels of letters, digits and hyphens"
    )
}

/// Splits a strictly valid address into local part and domain (see [`Email::parse`]).
fn split_email(s: &str) -> Option<(&str, &str)> {
    if s.len() > MAX_EMAIL_LEN {
        return None;
    }
    let (local, domain) = s.split_once('@')?;
    if valid_local_part(local) && valid_domain(domain) {
        Some((local, domain))
    } else {
        None
    }
}

/// A dot-atom local part: 1–64 atext characters and non-leading, non-trailing, single dots.
fn valid_local_part(local: &str) -> bool {
    !local.is_empty()
        && local.len() <= MAX_LOCAL_LEN
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local.bytes().all(|b| b == b'.' || is_atext(b))
}

/// RFC 5322 `atext`, ASCII only.
fn is_atext(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+/=?^_`{|}~-".contains(&b)
}

/// At least two LDH labels (1–63 bytes, no leading or trailing hyphen), 253 bytes at most, the
/// last label not all digits. No trailing dot. Any `@` fails the label check, which makes an
/// address with two `@` invalid.
fn valid_domain(domain: &str) -> bool {
    if domain.is_empty() || domain.len() > MAX_DOMAIN_LEN {
        return false;
    }
    let mut labels = 0;
    let mut last = "";
    for label in domain.split('.') {
        if !valid_label(label) {
            return false;
        }
        labels += 1;
        last = label;
    }
    labels >= 2 && !last.bytes().all(|b| b.is_ascii_digit())
}

/// A DNS label: 1–63 letters, digits or hyphens, not starting or ending with a hyphen.
fn valid_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 63
        && !label.starts_with('-')
        && !label.ends_with('-')
        && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// A GitHub login: 1–39 letters, digits or hyphens, not starting or ending with a hyphen.
fn valid_github_login(login: &str) -> bool {
    login.len() <= MAX_GITHUB_LOGIN_LEN && valid_label(login)
}

/// A GitHub team slug: 1–100 letters, digits, `-`, `_` or `.`.
fn valid_team_slug(slug: &str) -> bool {
    !slug.is_empty()
        && slug.len() <= MAX_GITHUB_TEAM_LEN
        && slug
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// Whether `set` (lower-cased) holds `value` compared ASCII case-insensitively. Lower-cases
/// into a stack buffer, allocating only for values longer than 256 bytes.
fn contains_ignore_ascii_case(set: &HashSet<String>, value: &str) -> bool {
    if set.is_empty() {
        return false;
    }
    let mut buf = [0u8; LOWERCASE_BUF_LEN];
    match buf.get_mut(..value.len()) {
        Some(slot) => {
            slot.copy_from_slice(value.as_bytes());
            slot.make_ascii_lowercase();
            // ASCII lower-casing keeps UTF-8 valid.
            std::str::from_utf8(slot).is_ok_and(|lower| set.contains(lower))
        }
        None => set.contains(value.to_ascii_lowercase().as_str()),
    }
}

/// Whether `domain` ends with `suffix` (lower-cased, starting with '.') and has at least one
/// byte before it, compared ASCII case-insensitively.
fn ends_with_ignore_ascii_case(domain: &str, suffix: &str) -> bool {
    domain.len() > suffix.len()
        && domain
            .as_bytes()
            .get(domain.len() - suffix.len()..)
            .is_some_and(|tail| tail.eq_ignore_ascii_case(suffix.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    /// An identity's list (groups, organisations, teams).
    fn list(items: &[&str]) -> Box<[Box<str>]> {
        items.iter().map(|s| Box::from(*s)).collect()
    }

    /// Lists for one spec, owned so a `PolicySpec` can borrow them.
    #[derive(Default)]
    struct Lists {
        email_domains: Vec<String>,
        allowed_emails: Vec<String>,
        allowed_groups: Vec<String>,
        github_orgs: Vec<String>,
        github_teams: Vec<String>,
    }

    impl Lists {
        fn domains(mut self, l: &[&str]) -> Self {
            self.email_domains = strings(l);
            self
        }
        fn emails(mut self, l: &[&str]) -> Self {
            self.allowed_emails = strings(l);
            self
        }
        fn groups(mut self, l: &[&str]) -> Self {
            self.allowed_groups = strings(l);
            self
        }
        fn orgs(mut self, l: &[&str]) -> Self {
            self.github_orgs = strings(l);
            self
        }
        fn teams(mut self, l: &[&str]) -> Self {
            self.github_teams = strings(l);
            self
        }
        fn spec(&self) -> PolicySpec<'_> {
            PolicySpec {
                email_domains: &self.email_domains,
                allowed_emails: &self.allowed_emails,
                emails_file: None,
                allowed_groups: &self.allowed_groups,
                github_orgs: &self.github_orgs,
                github_teams: &self.github_teams,
            }
        }
        fn compile(&self) -> Policy {
            match Policy::compile(&self.spec()) {
                Ok(p) => p,
                Err(e) => panic!("policy refused: {e:?}"),
            }
        }
        fn errors(&self) -> Vec<(String, String)> {
            match Policy::compile(&self.spec()) {
                Ok(p) => panic!("policy compiled: {p:?}"),
                Err(e) => e,
            }
        }
    }

    fn lists() -> Lists {
        Lists::default()
    }

    fn user(email: &str) -> Identity {
        Identity {
            subject: "sub-1".into(),
            email: Some(email.into()),
            email_verified: true,
            ..Identity::default()
        }
    }

    fn deny(reason: DenyReason) -> Decision {
        Decision::Deny(reason)
    }

    // ---- Email::parse ----

    #[test]
    fn email_parse_accepts_plain_addresses() {
        for s in [
            "alice@example.com",
            "a@b.co",
            "first.last@sub.example.co.uk",
            "x+tag@example.com",
            "o'brien@example.ie",
            "!#$%&'*+/=?^_`{|}~-@example.com",
            "a.b.c@x-y.example.com",
            "1@123.example.com",
            "user@xn--80ak6aa92e.com",
            "user@a1.b2",
        ] {
            let e = Email::parse(s).unwrap_or_else(|| panic!("{s} refused"));
            assert_eq!(e.as_str(), s);
            assert_eq!(e.to_string(), s);
        }
    }

    #[test]
    fn email_parse_lowercases_the_domain_only() {
        let e = Email::parse("Alice.Smith@Example.COM").unwrap();
        assert_eq!(e.as_str(), "Alice.Smith@example.com");
        assert_eq!(e.domain(), "example.com");
        assert_eq!(e.local_part(), "Alice.Smith");
    }

    #[test]
    fn email_parse_refuses() {
        for s in [
            "",
            "@",
            "alice",
            "alice@",
            "@example.com",
            "a@evil@corp.com",
            "a@@corp.com",
            "\"a@b\"@corp.com",
            "\"alice\"@corp.com",
            "a@corp.com.",
            "a@.corp.com",
            "a@corp..com",
            "a@corp",
            "a@localhost",
            "alice@exаmple.com",
            "аlice@example.com",
            "alice@example.cоm",
            "alice@éxample.com",
            "alice@xn--exmple-cua.com\u{200b}",
            "al ice@example.com",
            " alice@example.com",
            "alice@example.com ",
            "alice@exam ple.com",
            "alice\t@example.com",
            "alice@example.com\n",
            "alice@example.com\r\nBcc: x@y.com",
            "alice\u{0}@example.com",
            "alice@example.com\u{0}",
            ".alice@example.com",
            "alice.@example.com",
            "al..ice@example.com",
            "alice@-example.com",
            "alice@example-.com",
            "alice@example.-com",
            "alice@ex_ample.com",
            "alice@[127.0.0.1]",
            "alice@127.0.0.1",
            "alice@example.123",
            "Alice <alice@example.com>",
            "alice(comment)@example.com",
            "alice@example.com(comment)",
            "ali,ce@example.com",
            "ali;ce@example.com",
            "ali:ce@example.com",
            "ali\\ce@example.com",
            "ali[ce@example.com",
            "alice@exam%70le.com",
            "alice@example.com/x",
            "alice@example.com:25",
            "alice@EXAMPLE.COM.",
            "alice＠example.com",
        ] {
            assert_eq!(Email::parse(s), None, "{s:?}");
        }
    }

    #[test]
    fn email_parse_length_limits() {
        let local64 = "a".repeat(64);
        assert!(Email::parse(&format!("{local64}@example.com")).is_some());
        let local65 = "a".repeat(65);
        assert!(Email::parse(&format!("{local65}@example.com")).is_none());
        let label63 = "b".repeat(63);
        assert!(Email::parse(&format!("a@{label63}.com")).is_some());
        let label64 = "b".repeat(64);
        assert!(Email::parse(&format!("a@{label64}.com")).is_none());
        // Domain of exactly 253 bytes: 3 labels of 63 + 1 label of 61, plus 3 dots.
        let domain253 = format!("{l}.{l}.{l}.{}", "c".repeat(61), l = label63);
        assert_eq!(domain253.len(), 253);
        assert!(valid_domain(&domain253));
        // ...but with a local part the address passes 254 bytes.
        assert!(Email::parse(&format!("a@{domain253}")).is_none());
        let domain252 = format!("{l}.{l}.{l}.{}", "c".repeat(60), l = label63);
        assert!(Email::parse(&format!("a@{domain252}")).is_some());
        assert_eq!(format!("a@{domain252}").len(), 254);
        let domain254 = format!("{l}.{l}.{l}.{}", "c".repeat(62), l = label63);
        assert!(!valid_domain(&domain254));
    }

    // ---- compile ----

    #[test]
    fn empty_policy_does_not_compile() {
        let errors = lists().errors();
        assert_eq!(errors.len(), 1);
        let (field, message) = &errors[0];
        assert_eq!(field, "email_domains");
        assert!(message.contains("email_domains: [\"*\"]"), "{message}");
        assert!(message.contains("allowed_groups"), "{message}");
        assert!(message.contains("github_team"), "{message}");
        // PolicySpec::default() is the empty spec too.
        assert!(Policy::compile(&PolicySpec::default()).is_err());
    }

    #[test]
    fn invalid_domain_entries() {
        let errors = lists()
            .domains(&[
                "example.com",
                "*.example.com",
                "*",
                "",
                "com",
                "*.com",
                ".example.com",
                "@example.com",
                "ex*.com",
                "**.example.com",
                "*example.com",
                "example.com.",
                "exаmple.com",
                " example.com",
                "*.",
                "a@b.com",
            ])
            .errors();
        let fields: Vec<&str> = errors.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            [
                "email_domains[3]",
                "email_domains[4]",
                "email_domains[5]",
                "email_domains[6]",
                "email_domains[7]",
                "email_domains[8]",
                "email_domains[9]",
                "email_domains[10]",
                "email_domains[11]",
                "email_domains[12]",
                "email_domains[13]",
                "email_domains[14]",
                "email_domains[15]"
            ]
        );
        for (_, m) in &errors {
            assert!(m.contains("*.example.com"), "{m}");
        }
    }

    #[test]
    fn invalid_email_entries() {
        let errors = lists()
            .emails(&["ok@example.com", "a@evil@corp.com", "Alice <a@example.com>", ""])
            .errors();
        let fields: Vec<&str> = errors.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(fields, ["allowed_emails[1]", "allowed_emails[2]", "allowed_emails[3]"]);
        assert!(errors[0].1.contains("alice@example.com"), "{}", errors[0].1);
    }

    #[test]
    fn invalid_group_and_github_entries() {
        let errors = lists()
            .groups(&["admins", ""])
            .orgs(&["my-org", "", "-bad", "has space", "a/b", "x".repeat(40).as_str()])
            .teams(&[
                "my-org/team",
                "noslash",
                "/team",
                "org/",
                "a/b/c",
                "bad org/team",
                "org/te am",
            ])
            .errors();
        let fields: Vec<&str> = errors.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            [
                "allowed_groups[1]",
                "github_org[1]",
                "github_org[2]",
                "github_org[3]",
                "github_org[4]",
                "github_org[5]",
                "github_team[1]",
                "github_team[2]",
                "github_team[3]",
                "github_team[4]",
                "github_team[5]",
                "github_team[6]",
            ]
        );
        assert!(errors
            .iter()
            .find(|(f, _)| f == "github_team[1]")
            .unwrap()
            .1
            .contains("org/team"));
    }

    #[test]
    fn all_errors_are_reported_together() {
        let errors = lists().domains(&["com"]).emails(&["x"]).teams(&["y"]).errors();
        assert_eq!(errors.len(), 3);
    }

    // ---- email rule ----

    #[test]
    fn exact_domain() {
        let p = lists().domains(&["example.com"]).compile();
        assert_eq!(p.check(&user("alice@example.com")), Decision::Allow);
        assert_eq!(p.check(&user("ALICE@EXAMPLE.COM")), Decision::Allow);
        assert_eq!(p.check(&user("alice@Example.Com")), Decision::Allow);
        assert_eq!(
            p.check(&user("alice@sub.example.com")),
            deny(DenyReason::EmailNotAllowed)
        );
        assert_eq!(
            p.check(&user("alice@evilexample.com")),
            deny(DenyReason::EmailNotAllowed)
        );
        assert_eq!(
            p.check(&user("alice@example.com.evil.com")),
            deny(DenyReason::EmailNotAllowed)
        );
        assert_eq!(p.check(&user("alice@example.co")), deny(DenyReason::EmailNotAllowed));
        assert_eq!(p.check(&user("alice@example.com.")), deny(DenyReason::EmailNotAllowed));
        assert_eq!(p.check(&user("alice@exаmple.com")), deny(DenyReason::EmailNotAllowed));
    }

    #[test]
    fn configured_domains_are_case_insensitive() {
        let p = lists().domains(&["EXAMPLE.com", "*.Corp.COM"]).compile();
        assert_eq!(p.check(&user("a@example.com")), Decision::Allow);
        assert_eq!(p.check(&user("a@eu.corp.com")), Decision::Allow);
        assert_eq!(p.check(&user("a@EU.CORP.COM")), Decision::Allow);
    }

    #[test]
    fn subdomain_wildcard() {
        let p = lists().domains(&["*.example.com"]).compile();
        assert_eq!(p.check(&user("a@eu.example.com")), Decision::Allow);
        assert_eq!(p.check(&user("a@x.eu.example.com")), Decision::Allow);
        assert_eq!(p.check(&user("a@X.EU.Example.COM")), Decision::Allow);
        assert_eq!(p.check(&user("a@example.com")), deny(DenyReason::EmailNotAllowed));
        assert_eq!(p.check(&user("a@evilexample.com")), deny(DenyReason::EmailNotAllowed));
        assert_eq!(
            p.check(&user("a@eu.evilexample.com")),
            deny(DenyReason::EmailNotAllowed)
        );
        assert_eq!(
            p.check(&user("a@example.com.evil.com")),
            deny(DenyReason::EmailNotAllowed)
        );
        assert_eq!(p.check(&user("a@.example.com")), deny(DenyReason::EmailNotAllowed));
        assert_eq!(p.check(&user("a@eu.example.com.")), deny(DenyReason::EmailNotAllowed));
        assert_eq!(p.check(&user("a@xexample.com")), deny(DenyReason::EmailNotAllowed));
    }

    #[test]
    fn apex_and_wildcard_together() {
        let p = lists().domains(&["example.com", "*.example.com"]).compile();
        assert_eq!(p.check(&user("a@example.com")), Decision::Allow);
        assert_eq!(p.check(&user("a@b.example.com")), Decision::Allow);
        assert_eq!(p.check(&user("a@evilexample.com")), deny(DenyReason::EmailNotAllowed));
    }

    #[test]
    fn any_domain() {
        let p = lists().domains(&["*"]).compile();
        assert_eq!(p.check(&user("a@example.com")), Decision::Allow);
        assert_eq!(p.check(&user("a@anything.example.org")), Decision::Allow);
        // '*' still needs a well-formed, verified address.
        assert_eq!(p.check(&user("a@evil@corp.com")), deny(DenyReason::EmailNotAllowed));
        assert_eq!(p.check(&user("not-an-email")), deny(DenyReason::EmailNotAllowed));
        let mut unverified = user("a@example.com");
        unverified.email_verified = false;
        assert_eq!(p.check(&unverified), deny(DenyReason::EmailNotVerified));
        let no_email = Identity {
            subject: "s".into(),
            email_verified: true,
            ..Identity::default()
        };
        assert_eq!(p.check(&no_email), deny(DenyReason::NoEmail));
    }

    #[test]
    fn allowed_emails() {
        let p = lists().emails(&["Alice@Example.com", "bob@partner.org"]).compile();
        assert_eq!(p.check(&user("alice@example.com")), Decision::Allow);
        assert_eq!(p.check(&user("ALICE@EXAMPLE.COM")), Decision::Allow);
        assert_eq!(p.check(&user("Alice@Example.com")), Decision::Allow);
        assert_eq!(p.check(&user("bob@partner.org")), Decision::Allow);
        assert_eq!(p.check(&user("carol@example.com")), deny(DenyReason::EmailNotAllowed));
        assert_eq!(
            p.check(&user("bob@partner.org.evil.com")),
            deny(DenyReason::EmailNotAllowed)
        );
        assert_eq!(p.check(&user("bob@evil.org")), deny(DenyReason::EmailNotAllowed));
        assert_eq!(p.check(&user("alice@example.com ")), deny(DenyReason::EmailNotAllowed));
        assert_eq!(p.check(&user(" alice@example.com")), deny(DenyReason::EmailNotAllowed));
        assert_eq!(p.check(&user("alice@example.com.")), deny(DenyReason::EmailNotAllowed));
        assert_eq!(
            p.check(&user("\"alice\"@example.com")),
            deny(DenyReason::EmailNotAllowed)
        );
        assert_eq!(p.check(&user("аlice@example.com")), deny(DenyReason::EmailNotAllowed));
    }

    #[test]
    fn allowed_emails_or_domains() {
        let p = lists()
            .domains(&["example.com"])
            .emails(&["contractor@gmail.com"])
            .compile();
        assert_eq!(p.check(&user("a@example.com")), Decision::Allow);
        assert_eq!(p.check(&user("contractor@gmail.com")), Decision::Allow);
        assert_eq!(p.check(&user("someone@gmail.com")), deny(DenyReason::EmailNotAllowed));
    }

    #[test]
    fn multiple_at_signs() {
        let p = lists().domains(&["corp.com"]).emails(&["a@corp.com"]).compile();
        for e in [
            "a@evil@corp.com",
            "a@corp.com@evil.com",
            "\"a@b\"@corp.com",
            "a@@corp.com",
        ] {
            assert_eq!(p.check(&user(e)), deny(DenyReason::EmailNotAllowed), "{e}");
        }
    }

    #[test]
    fn unverified_email_is_refused_even_if_listed() {
        let p = lists()
            .domains(&["example.com"])
            .emails(&["alice@example.com"])
            .compile();
        let mut who = user("alice@example.com");
        who.email_verified = false;
        assert_eq!(p.check(&who), deny(DenyReason::EmailNotVerified));
        // Verification is checked before syntax, so the log names the first real problem.
        let mut bad = user("a@evil@example.com");
        bad.email_verified = false;
        assert_eq!(p.check(&bad), deny(DenyReason::EmailNotVerified));
    }

    #[test]
    fn missing_or_empty_email() {
        let p = lists().domains(&["example.com"]).compile();
        let mut who = user("x@example.com");
        who.email = None;
        assert_eq!(p.check(&who), deny(DenyReason::NoEmail));
        who.email = Some("".into());
        assert_eq!(p.check(&who), deny(DenyReason::NoEmail));
        who.email_verified = false;
        assert_eq!(p.check(&who), deny(DenyReason::NoEmail));
    }

    #[test]
    fn preferred_username_and_subject_are_not_emails() {
        let p = lists().domains(&["example.com"]).compile();
        let who = Identity {
            subject: "alice@example.com".into(),
            preferred_username: Some("alice@example.com".into()),
            email: None,
            email_verified: true,
            ..Identity::default()
        };
        assert_eq!(p.check(&who), deny(DenyReason::NoEmail));
    }

    #[test]
    fn very_long_email_is_refused_without_panicking() {
        let p = lists().domains(&["*"]).emails(&["a@example.com"]).compile();
        let long = format!("{}@example.com", "a".repeat(1000));
        assert_eq!(p.check(&user(&long)), deny(DenyReason::EmailNotAllowed));
    }

    // ---- group rule ----

    #[test]
    fn groups_exact_and_case_sensitive() {
        let p = lists().groups(&["Admins", "00gabc123"]).compile();
        let mut who = user("a@example.com");
        who.email_verified = false; // no email rule, so irrelevant
        who.groups = list(&["staff", "Admins"]);
        assert_eq!(p.check(&who), Decision::Allow);
        who.groups = list(&["00gabc123"]);
        assert_eq!(p.check(&who), Decision::Allow);
        who.groups = list(&["admins"]);
        assert_eq!(p.check(&who), deny(DenyReason::NotInAllowedGroup));
        who.groups = list(&["ADMINS", "Admins ", " Admins", "Admin", "AdminsX", "00GABC123"]);
        assert_eq!(p.check(&who), deny(DenyReason::NotInAllowedGroup));
        who.groups = Box::default();
        assert_eq!(p.check(&who), deny(DenyReason::NotInAllowedGroup));
        who.groups = list(&[""]);
        assert_eq!(p.check(&who), deny(DenyReason::NotInAllowedGroup));
    }

    #[test]
    fn groups_only_policy_needs_no_email() {
        let p = lists().groups(&["g"]).compile();
        let who = Identity {
            subject: "s".into(),
            groups: list(&["g"]),
            ..Identity::default()
        };
        assert_eq!(p.check(&who), Decision::Allow);
    }

    // ---- GitHub rule ----

    #[test]
    fn github_orgs() {
        let p = lists().orgs(&["My-Org"]).compile();
        let mut who = Identity {
            github_orgs: list(&["other", "my-org"]),
            ..Identity::default()
        };
        assert_eq!(p.check(&who), Decision::Allow);
        who.github_orgs = list(&["MY-ORG"]);
        assert_eq!(p.check(&who), Decision::Allow);
        who.github_orgs = list(&["my-org-evil", "evil-my-org", "my-or", "my-org/team"]);
        assert_eq!(p.check(&who), deny(DenyReason::NotInAllowedGithubOrgOrTeam));
        who.github_orgs = Box::default();
        assert_eq!(p.check(&who), deny(DenyReason::NotInAllowedGithubOrgOrTeam));
        // Team membership alone does not satisfy an org rule: only github_orgs counts (the
        // provider lists every org the user belongs to, team orgs included).
        who.github_teams = list(&["my-org/platform"]);
        assert_eq!(p.check(&who), deny(DenyReason::NotInAllowedGithubOrgOrTeam));
    }

    #[test]
    fn github_teams() {
        let p = lists().teams(&["my-org/Platform"]).compile();
        let mut who = Identity {
            github_teams: list(&["my-org/platform"]),
            ..Identity::default()
        };
        assert_eq!(p.check(&who), Decision::Allow);
        who.github_teams = list(&["MY-ORG/PLATFORM"]);
        assert_eq!(p.check(&who), Decision::Allow);
        who.github_teams = list(&["other-org/platform", "my-org/platform-x", "my-org", "platform"]);
        assert_eq!(p.check(&who), deny(DenyReason::NotInAllowedGithubOrgOrTeam));
        // Membership of the org alone is not membership of the team.
        who.github_teams = Box::default();
        who.github_orgs = list(&["my-org"]);
        assert_eq!(p.check(&who), deny(DenyReason::NotInAllowedGithubOrgOrTeam));
    }

    #[test]
    fn github_orgs_or_teams() {
        let p = lists().orgs(&["org-a"]).teams(&["org-b/team"]).compile();
        let mut who = Identity {
            github_orgs: list(&["org-a"]),
            ..Identity::default()
        };
        assert_eq!(p.check(&who), Decision::Allow);
        who.github_orgs = list(&["org-b"]);
        assert_eq!(p.check(&who), deny(DenyReason::NotInAllowedGithubOrgOrTeam));
        who.github_teams = list(&["org-b/team"]);
        assert_eq!(p.check(&who), Decision::Allow);
    }

    #[test]
    fn long_github_values_do_not_panic() {
        let p = lists().orgs(&["org"]).compile();
        let who = Identity {
            github_orgs: vec!["o".repeat(10_000).into(), "ORG".into()].into(),
            ..Identity::default()
        };
        assert_eq!(p.check(&who), Decision::Allow);
        let who = Identity {
            github_orgs: vec!["o".repeat(10_000).into()].into(),
            github_teams: vec!["é".repeat(200).into()].into(),
            ..Identity::default()
        };
        assert_eq!(p.check(&who), deny(DenyReason::NotInAllowedGithubOrgOrTeam));
    }

    // ---- AND combination ----

    #[test]
    fn all_applicable_rules_must_pass() {
        let p = lists()
            .domains(&["example.com"])
            .groups(&["admins"])
            .orgs(&["my-org"])
            .compile();
        let good = Identity {
            subject: "s".into(),
            email: Some("a@example.com".into()),
            email_verified: true,
            preferred_username: None,
            groups: list(&["admins"]),
            github_orgs: list(&["my-org"]),
            github_teams: Box::default(),
        };
        assert_eq!(p.check(&good), Decision::Allow);

        let mut bad_email = good.clone();
        bad_email.email = Some("a@other.com".into());
        assert_eq!(p.check(&bad_email), deny(DenyReason::EmailNotAllowed));

        let mut bad_group = good.clone();
        bad_group.groups = list(&["users"]);
        assert_eq!(p.check(&bad_group), deny(DenyReason::NotInAllowedGroup));

        let mut bad_org = good.clone();
        bad_org.github_orgs = list(&["other"]);
        assert_eq!(p.check(&bad_org), deny(DenyReason::NotInAllowedGithubOrgOrTeam));

        // The first failing rule (email, then groups, then GitHub) is reported.
        let mut all_bad = good.clone();
        all_bad.email_verified = false;
        all_bad.groups = Box::default();
        all_bad.github_orgs = Box::default();
        assert_eq!(p.check(&all_bad), deny(DenyReason::EmailNotVerified));
        all_bad.email_verified = true;
        assert_eq!(p.check(&all_bad), deny(DenyReason::NotInAllowedGroup));
    }

    #[test]
    fn email_and_group() {
        let p = lists().emails(&["alice@example.com"]).groups(&["g"]).compile();
        let mut who = user("alice@example.com");
        assert_eq!(p.check(&who), deny(DenyReason::NotInAllowedGroup));
        who.groups = list(&["g"]);
        assert_eq!(p.check(&who), Decision::Allow);
        who.email = Some("bob@example.com".into());
        assert_eq!(p.check(&who), deny(DenyReason::EmailNotAllowed));
    }

    #[test]
    fn rules_that_do_not_apply_are_ignored() {
        // Only a GitHub rule: email and groups do not matter.
        let p = lists().orgs(&["o"]).compile();
        let who = Identity {
            email: Some("garbage".into()),
            email_verified: false,
            github_orgs: list(&["o"]),
            ..Identity::default()
        };
        assert_eq!(p.check(&who), Decision::Allow);
    }

    // ---- misc ----

    #[test]
    fn identity_user_is_the_subject() {
        let who = Identity {
            subject: "sub-42".into(),
            email: Some("a@example.com".into()),
            preferred_username: Some("alice".into()),
            ..Identity::default()
        };
        assert_eq!(who.user(), "sub-42");
    }

    #[test]
    fn deny_reasons_have_sentences() {
        for r in [
            DenyReason::NoEmail,
            DenyReason::EmailNotVerified,
            DenyReason::EmailNotAllowed,
            DenyReason::NotInAllowedGroup,
            DenyReason::NotInAllowedGithubOrgOrTeam,
        ] {
            let s = r.to_string();
            assert!(s.len() > 20 && !s.ends_with('.'), "{s}");
        }
    }

    #[test]
    fn helpers() {
        let set: HashSet<String> = ["abc".to_string()].into_iter().collect();
        assert!(contains_ignore_ascii_case(&set, "ABC"));
        assert!(!contains_ignore_ascii_case(&set, "ABCD"));
        assert!(!contains_ignore_ascii_case(&HashSet::new(), "abc"));
        let long = "A".repeat(300);
        let set: HashSet<String> = [long.to_ascii_lowercase()].into_iter().collect();
        assert!(contains_ignore_ascii_case(&set, &long));
        assert!(ends_with_ignore_ascii_case("a.example.com", ".example.com"));
        assert!(ends_with_ignore_ascii_case("A.EXAMPLE.COM", ".example.com"));
        assert!(!ends_with_ignore_ascii_case(".example.com", ".example.com"));
        assert!(!ends_with_ignore_ascii_case("example.com", ".example.com"));
        assert!(!ends_with_ignore_ascii_case("aexample.com", ".example.com"));
    }
}
