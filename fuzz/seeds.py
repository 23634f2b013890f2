#!/usr/bin/env python3
"""Writes the seed corpora under corpus/ (python3 with the `cryptography` package).

The cookies are sealed as gateway/src/session/seal.rs seals them, with the fixed key of
fuzz_targets/cookie_open.rs; the configurations are config/ plus variants. Re-running it
replaces the seeds (cookie nonces are random)."""
import os, json, base64, hashlib
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
here = os.path.dirname(os.path.abspath(__file__))
root = os.path.join(here, 'corpus')
def put(target, name, data):
    d = os.path.join(root, target); os.makedirs(d, exist_ok=True)
    if isinstance(data, str): data = data.encode()
    open(os.path.join(d, name), 'wb').write(data)

# path_canonical: issue 8 §1 forms, their mirrors, and the documented cases.
paths = {
 'issue-dotdot-semicolon': '/private/..;/public/x',
 'issue-semicolon-dotdot': '/private;/../public/x',
 'issue-dotdot': '/private/../public/x',
 'issue-encoded-dotdot': '/private/%2e%2e/public/x',
 'issue-encoded-slash': '/private/x%2f..%2f..%2fpublic/y',
 'issue-backslash': '/private/x\\..\\..\\public/y',
 'issue-encoded-backslash': '/private/x%5c..%5c..%5cpublic/y',
 'issue-encoded-letter': '/%70ublic/x',
 'mirror-dotdot-semicolon': '/public/..;/private/x',
 'mirror-encoded-dotdot': '/public/%2E%2E/private/x',
 'mirror-backslash': '/public/x\\..\\..\\private/y',
 'mirror-encoded-letter': '/%70rivate/x',
 'canonical': '/api/v1/users/42',
 'sub-delims': "/a-b_c~d!e$f&g'h(i)j*k+l,m=n:o@p",
 'dots-as-names': '/.../a/.../b/..a/a../.hidden',
 'query-untouched': '/a/../b?x=/../c&y=%2F%zz',
 'matrix-params': '/admin;.css',
 'matrix-jsessionid': '/a;jsessionid=1/b;x=2/',
 'encoded-semicolon': '/a%3Bb/..%3Bx',
 'double-encoding': '/%252e%252e/x',
 'empty-segments': '//a///b//./c/..//',
 'climb-above-root': '/../../../etc/passwd',
 'trailing-dot-segment': '/a/b/..',
 'utf8': '/caf%C3%A9/%E2%82%AC',
 'bad-utf8': '/%C3%28/x',
 'control': '/a%00b/%0d%0a',
 'bad-escape': '/100%/x%zz',
 'absolute-form': 'http://app1.example.com/private/../public/x?q=1',
 'absolute-form-root': 'https://app1.example.com?q',
 'absolute-form-userinfo': 'http://user@app1.example.com:8443/a/./b',
 'asterisk': '*',
 'root': '/',
}
for k, v in paths.items(): put('path_canonical', k, v)

# cookie_open: real cookies sealed with the harness's seed key, and what they hold.
key = base64.b64decode('ZnV6ei1vbmx5LWtleS1ub3Qtc2VjcmV0LTAxMjM0NTY=')
kid = hashlib.sha256(key).digest()[:4]
def seal(aad, pt):
    nonce = os.urandom(12)
    return 'v1.' + base64.urlsafe_b64encode(kid + nonce + AESGCM(key).encrypt(nonce, pt, aad)).decode().rstrip('=')
ticket = os.urandom(48)
put('cookie_open', 'ticket-cookie', seal(b'authgate/session/v1|_authgate_corp', ticket))
put('cookie_open', 'ticket-cookie-other-name', seal(b'authgate/session/v1|_authgate_github', ticket))
put('cookie_open', 'ticket-cookie-short', seal(b'authgate/session/v1|_authgate_corp', ticket[:47]))
login = json.dumps({'state': 'q2XbN1kQ0y7lJ5cV', 'nonce': 'n0nce-Zx81', 'verifier': 'v' * 43, 'rd': '/private/report?x=1', 'exp': 1893456000}, separators=(',', ':'))
put('cookie_open', 'login-cookie', seal(b'authgate/login/v1|corp|https://app1.example.com', login.encode()))
put('cookie_open', 'login-state-json', login)
session = {'provider': 'corp', 'identity': {'subject': 'u-1', 'email': 'alice@example.com', 'email_verified': True, 'preferred_username': 'alice', 'groups': ['admins'], 'github_orgs': [], 'github_teams': []}, 'access_token': 'at', 'access_expires_at': 1893456000, 'refresh_token': 'rt', 'id_token': 'eyJ.x.y', 'created_at': 1764000000, 'refreshed_at': 1764000000, 'expires_at': 1893456000}
put('cookie_open', 'session-json', json.dumps(session, separators=(',', ':')))
for i, junk in enumerate(['v1.', 'v1.!!!', 'v2.abc', 'v1.AAAA', 'v1.%%%%']):
    put('cookie_open', f'junk-{i}', junk)

# redirect_rd: app host, cookie domain, allow_http, rd — values from auth/redirect.rs tests.
rds = {
 'scheme-relative': ('app1.example.com', '', '0', '//evil.com'),
 'slash-backslash': ('app1.example.com', '', '0', '/\\evil.com'),
 'tab': ('app1.example.com', '', '0', '/\t/evil.com'),
 'encoded-tab': ('app1.example.com', '', '0', '/%09/evil.com'),
 'encoded-double-slash': ('app1.example.com', '', '0', '/%2F%2Fevil.com'),
 'crlf': ('app1.example.com', '', '0', '/%0d%0aSet-Cookie:a=b'),
 'suffix-host': ('app1.example.com', '.example.com', '0', 'https://example.com.evil.com'),
 'userinfo': ('app1.example.com', '.example.com', '0', 'https://app1.example.com@evil.com'),
 'escaped-userinfo': ('app1.example.com', '.example.com', '0', 'https://evil.com%2F@app1.example.com'),
 'opaque': ('app1.example.com', '', '0', 'https:evil.com'),
 'javascript': ('app1.example.com', '', '0', 'javascript:alert(1)'),
 'homoglyph': ('app1.example.com', '.example.com', '0', 'https://аpp1.example.com'),
 'same-host-port': ('app1.example.com:8443', '', '0', 'https://APP1.example.com:8443/x?y#z'),
 'trailing-dot': ('app1.example.com', '', '0', 'https://app1.example.com./x'),
 'sibling-in-domain': ('app1.example.com', 'example.com', '0', 'https://other.example.com/x'),
 'single-label-domain': ('app1.example.com', 'com', '0', 'https://evil.com/'),
 'http-allowed': ('app1.example.com', '', '1', 'http://app1.example.com/x'),
 'path-kept': ('app1.example.com', '', '0', '/search?q=a+b&x=%2F%2F'),
 'double-encoded': ('app1.example.com', '', '0', '/%252F%252Fevil.com'),
 'fragment-at': ('app1.example.com', '', '0', 'https://app1.example.com#@evil.com'),
 'ipv6': ('app1.example.com', '', '0', 'https://[::1]/'),
}
for k, (h, d, a, rd) in rds.items(): put('redirect_rd', k, f'{h}\n{d}\n{a}\n{rd}')

# request_inspect: request heads.
reqs = {
 'simple': 'GET /a%20b?x=1 HTTP/1.1\r\nHost: App1.Example.com:8443\r\nUser-Agent: curl/8\r\n\r\n',
 'no-host': 'GET / HTTP/1.1\r\nAccept: */*\r\n\r\n',
 'two-hosts': 'GET / HTTP/1.1\r\nHost: a.example.com\r\nHost: b.example.com\r\n\r\n',
 'bad-escape': 'GET /%zz HTTP/1.1\r\nHost: a.example.com\r\n\r\n',
 'absolute-same-host': 'GET http://app1.example.com/x HTTP/1.1\r\nHost: app1.example.com\r\n\r\n',
 'absolute-other-host': 'GET https://evil.com/x HTTP/1.1\r\nHost: app1.example.com\r\n\r\n',
 'options-asterisk': 'OPTIONS * HTTP/1.1\r\nHost: app1.example.com\r\n\r\n',
 'ipv6-host': 'GET / HTTP/1.1\r\nHost: [::1]:8443\r\n\r\n',
 'host-trailing-dot': 'POST /api/x HTTP/1.1\r\nHost: APP1.example.com.\r\nContent-Length: 0\r\n\r\n',
 'spoofed-headers': 'GET /public/x HTTP/1.1\r\nHost: app1.example.com\r\nX-Original-URL: /admin\r\nX-Forwarded-For: 1.2.3.4\r\nX-Forwarded-Host: evil.com\r\n\r\n',
 'path-attack': 'GET /private/..;/public/x HTTP/1.1\r\nHost: app1.example.com\r\n\r\n',
 'connect': 'CONNECT app1.example.com:443 HTTP/1.1\r\nHost: app1.example.com:443\r\n\r\n',
 'big-header': 'GET / HTTP/1.1\r\nHost: a.example.com\r\nX-Big: ' + 'v' * 4100 + '\r\n\r\n',
 'long-uri': 'GET /' + 'a' * 1100 + ' HTTP/1.1\r\nHost: a.example.com\r\n\r\n',
}
for k, v in reqs.items(): put('request_inspect', k, v)

# config_load: the example configuration (main file NUL app file), and variants.
cfg = os.path.join(here, '..', 'config')
main = open(f'{cfg}/gateway.yaml').read()
for app in ['app1', 'admin', 'preview']:
    put('config_load', f'example-{app}', main + '\0' + open(f'{cfg}/apps.d/{app}.yaml').read())
# Without files to read, so that the cookie and provider sections compile.
bare = '\n'.join(l for l in main.splitlines() if 'ca_file' not in l and 'cert_file' not in l).replace('  certificates:\n', '  certificates: []\n')
put('config_load', 'example-no-files-app1', bare + '\0' + open(f'{cfg}/apps.d/app1.yaml').read())
put('config_load', 'redis-sentinel', 'listen: { https: "127.0.0.1:8443" }\ntls: { certificates: [] }\nsessions:\n  store: redis\n  redis:\n    sentinel: { master: mymaster, addresses: ["127.0.0.1:26379"] }\n    key_prefix: "authgate:"\n  cache: { max_entries: 1000 }\n\0host: a.example.com\nupstreams: ["https://[::1]:9443/"]\nhealth_check: { path: /healthz, interval: 100ms }\ntimeouts: { connect: 250ms, read: 2m }\n')
put('config_load', 'github-provider', 'listen: { https: "127.0.0.1:8443" }\ntls: { certificates: [] }\ncookie: { secrets_env: AUTHGATE_COOKIE_SECRETS, expire: 1h }\nproviders:\n  gh: { type: github, client_id: x, client_secret_env: CORP_CLIENT_SECRET }\n\0host: "*.preview.example.com"\nupstreams: ["127.0.0.1:9001", "http://127.0.0.1"]\nauth:\n  provider: gh\n  github_org: [acme]\n  github_team: [acme/ops]\n  skip_auth_routes: ["GET,HEAD=^/healthz$", "^/public/"]\n  api_routes: ["^/api/"]\n')
put('config_load', 'broken-yaml', 'listen: [\0host: [\n')

# logout_token: tokens signed with the fixed key of fuzz_targets/logout_token.rs (its JWKS holds
# the public half), valid at its NOW, and variants the verifier must refuse.
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
LOGOUT_KEY = ec.derive_private_key(0x6c6f676f75742d66757a7a2d6b65792d6e6f742d736563726574, ec.SECP256R1())
def b64(b): return base64.urlsafe_b64encode(b).rstrip(b'=').decode()
def jws(header, claims):
    signing_input = b64(json.dumps(header).encode()) + '.' + b64(json.dumps(claims).encode())
    r, s = decode_dss_signature(LOGOUT_KEY.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
    return signing_input + '.' + b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))
NOW = 1_800_000_000
EVENT = {'http://schemas.openid.net/event/backchannel-logout': {}}
good = {'iss': 'https://idp.example.com', 'aud': 'gateway', 'iat': NOW, 'exp': NOW + 120,
        'jti': 'j1', 'sub': 'alice', 'sid': 's1', 'events': EVENT}
header = {'alg': 'ES256', 'typ': 'logout+jwt', 'kid': 'fuzz'}
put('logout_token', 'valid', jws(header, good))
put('logout_token', 'valid-sid-only', jws({'alg': 'ES256'}, {k: v for k, v in good.items() if k != 'sub'}))
put('logout_token', 'valid-aud-list', jws(header, dict(good, aud=['x', 'gateway'])))
put('logout_token', 'id-token-with-nonce', jws(header, dict(good, nonce='n')))
put('logout_token', 'no-event', jws(header, dict(good, events={})))
put('logout_token', 'alg-none', b64(b'{"alg":"none"}') + '.' + b64(json.dumps(good).encode()) + '.')
put('logout_token', 'encrypted-shape', 'a.b.c.d.e')
