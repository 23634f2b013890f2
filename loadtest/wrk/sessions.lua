-- loadtest/wrk/sessions.lua: wrk requests that spread session cookies (and optionally hosts).
--
-- Environment:
--   COOKIES_FILE   one "name=value" cookie per line (as printed by `authgate session mint`); required
--   COOKIES_LIMIT  use only the first N cookies (default: all)
--   WRK_THREADS    wrk's -t (each thread walks its own stride of the cookie list)
--   HOSTS          number of hosts to spread over (default 1)
--   HOST_FMT       printf format of the host names (default "app%04d.example.com"); with HOSTS=1
--                  and HOST set, HOST is used instead
--   HOST           the single Host header (default app1.example.com)
--   REQ_PATH       the request path (default /)
--
-- Thread t of T sends cookie t, t+T, t+2T, ... and then starts over, so with N cookies every
-- cookie is sent once per N requests (a full pass touches every session once). The host of a
-- request is chosen by the same counter (cookie i goes to host i mod HOSTS), so traffic is also
-- spread evenly over the hosts.

local threads_started = 0

function setup(thread)
  thread:set("tid", threads_started)
  threads_started = threads_started + 1
end

local cookies, hosts, n, nhosts, i, step, path

function init(args)
  local file = os.getenv("COOKIES_FILE") or error("COOKIES_FILE is not set")
  local limit = tonumber(os.getenv("COOKIES_LIMIT") or "0")
  cookies = {}
  for line in io.lines(file) do
    if line ~= "" then
      cookies[#cookies + 1] = line
      if limit > 0 and #cookies >= limit then break end
    end
  end
  n = #cookies
  if n == 0 then error("no cookies in " .. file) end
  nhosts = tonumber(os.getenv("HOSTS") or "1")
  local fmt = os.getenv("HOST_FMT") or "app%04d.example.com"
  hosts = {}
  if nhosts == 1 and os.getenv("HOST") then
    hosts[1] = os.getenv("HOST")
  else
    for h = 1, nhosts do hosts[h] = string.format(fmt, h) end
  end
  step = tonumber(os.getenv("WRK_THREADS") or "1")
  i = tid
  path = os.getenv("REQ_PATH") or "/"
end

function request()
  local k = i % n
  i = i + step
  return wrk.format("GET", path, { ["Host"] = hosts[(k % nhosts) + 1], ["Cookie"] = cookies[k + 1] })
end
