//! Browsers cannot be used against the box: DNS rebinding and cross-site requests.
//!
//! Contract:
//! - **Host** ([`Guard::host_allowed`]): a request without a valid key (and every request on a
//!   box without keys) must name the box in its `Host` header: a loopback name or address, an
//!   address of this machine (the bound one included), the machine's host name with or without
//!   `.local`, or a name of `FACE_ALLOWED_HOSTS`; the port is not compared. Else 421. A page on
//!   `http://attacker.example:8000` whose name the attacker re-points at the box sends
//!   `Host: attacker.example:8000` and is refused, so it can neither read nor change anything.
//!   A request without `Host` (HTTP/1.0 tools) passes: browsers always send one.
//! - **Origin** ([`Guard::cross_site`]): a request that may change something (any method but
//!   GET and HEAD) and every WebSocket upgrade is refused (403) when a browser says it comes from
//!   elsewhere: `Sec-Fetch-Site: cross-site`, or an `Origin` that is neither the box's own
//!   (`http://` or `https://`, as the request came, followed by its own `Host`) nor one of
//!   `FACE_ALLOWED_ORIGINS`. Clients that are not browsers send no `Origin` (curl, the original
//!   service's clients) or their own `http://host:port` (Python's websocket-client), which is
//!   the box's own: both pass. This holds with and without keys.
//!
//! The machine's addresses are read from the system when a `Host` names an address not seen yet
//! (at most once every [`REFRESH`]), so a new DHCP lease is picked up without a restart.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::locks::lock;

/// How often the machine's addresses may be read again.
pub const REFRESH: Duration = Duration::from_secs(10);

/// The names and origins the box answers to.
pub struct Guard {
    /// Lower-case host names without a trailing dot.
    names: HashSet<String>,
    /// Lower-case `scheme://host[:port]` origins allowed besides the box's own.
    origins: HashSet<String>,
    addresses: Mutex<(HashSet<IpAddr>, Option<Instant>)>,
}

/// The host part of a `Host` header (`box.local:8000`, `[::1]:8000`, `10.0.0.5`), lower case
/// without a trailing dot; `None` when it does not read as a host.
fn host_part(host: &str) -> Option<String> {
    let host = host.trim();
    let name = if let Some(rest) = host.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.starts_with(':')) {
            return None;
        }
        inside
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            Some(_) => return None,
            None => host,
        }
    };
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    let fine = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:%".contains(&b));
    fine.then_some(name)
}

/// An origin as compared: lower case, without a trailing slash.
fn normal_origin(origin: &str) -> String {
    origin.trim().trim_end_matches('/').to_ascii_lowercase()
}

impl Guard {
    /// The guard for a box bound to `bind`, with the extra names and origins of the settings.
    pub fn new(bind: Option<IpAddr>, extra_hosts: &[String], extra_origins: &[String]) -> Guard {
        let mut names: HashSet<String> = ["localhost"].map(String::from).into();
        if let Some(host) = hostname() {
            let host = host.to_ascii_lowercase();
            let short = host.split('.').next().unwrap_or(&host).to_string();
            names.insert(format!("{short}.local"));
            names.insert(short);
            names.insert(host);
        }
        names.extend(extra_hosts.iter().filter_map(|h| host_part(h)));
        let mut addresses = HashSet::new();
        addresses.extend(bind.filter(|ip| !ip.is_unspecified()));
        Guard {
            names,
            origins: extra_origins.iter().map(|o| normal_origin(o)).collect(),
            addresses: Mutex::new((addresses, None)),
        }
    }

    /// Whether a request whose `Host` header is `host` is for this box.
    pub fn host_allowed(&self, host: Option<&str>) -> bool {
        let Some(host) = host else {
            return true;
        };
        let Some(name) = host_part(host) else {
            return false;
        };
        if self.names.contains(&name) || name.ends_with(".localhost") {
            return true;
        }
        // An address: loopback, or one of this machine's.
        let Ok(ip) = name.split('%').next().unwrap_or(&name).parse::<IpAddr>() else {
            return false;
        };
        if ip.is_loopback() {
            return true;
        }
        let mut known = lock(&self.addresses);
        if known.0.contains(&ip) {
            return true;
        }
        let stale = known.1.is_none_or(|read| read.elapsed() >= REFRESH);
        if stale {
            known.0.extend(machine_addresses());
            known.1 = Some(Instant::now());
        }
        known.0.contains(&ip)
    }

    /// Whether a browser says this request comes from another site: `sec_fetch_site` and
    /// `origin` are its headers, `secure` whether it came over TLS, `host` its `Host` header.
    pub fn cross_site(
        &self,
        sec_fetch_site: Option<&str>,
        origin: Option<&str>,
        secure: bool,
        host: Option<&str>,
    ) -> bool {
        if sec_fetch_site.is_some_and(|s| s.trim().eq_ignore_ascii_case("cross-site")) {
            return true;
        }
        let Some(origin) = origin else {
            return false;
        };
        let origin = normal_origin(origin);
        let own = host.map(|h| {
            let scheme = if secure { "https" } else { "http" };
            format!("{scheme}://{}", h.trim().to_ascii_lowercase())
        });
        own.as_deref() != Some(origin.as_str()) && !self.origins.contains(&origin)
    }
}

/// This machine's host name.
fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
}

/// This machine's interface addresses.
fn machine_addresses() -> Vec<IpAddr> {
    let mut found = Vec::new();
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes a pointer to a list it allocated into `list`, or fails and
    // leaves it alone; the list is only read below and freed once with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return found;
    }
    let mut node = list;
    while !node.is_null() {
        // SAFETY: `node` is a non-null element of the list getifaddrs returned, not freed yet.
        let entry = unsafe { &*node };
        if !entry.ifa_addr.is_null() {
            // SAFETY: ifa_addr points to a sockaddr whose family says which struct it is; each
            // branch reads it as the struct of that family.
            let ip = unsafe {
                match i32::from((*entry.ifa_addr).sa_family) {
                    libc::AF_INET => {
                        let v4 = &*(entry.ifa_addr as *const libc::sockaddr_in);
                        Some(IpAddr::from(u32::from_be(v4.sin_addr.s_addr).to_be_bytes()))
                    }
                    libc::AF_INET6 => {
                        let v6 = &*(entry.ifa_addr as *const libc::sockaddr_in6);
                        Some(IpAddr::from(v6.sin6_addr.s6_addr))
                    }
                    _ => None,
                }
            };
            found.extend(ip);
        }
        node = entry.ifa_next;
    }
    // SAFETY: `list` came from a successful getifaddrs and is freed exactly once.
    unsafe { libc::freeifaddrs(list) };
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard() -> Guard {
        Guard::new(
            Some("127.0.0.1".parse().unwrap()),
            &["attendance.school.lan".into()],
            &["https://office.school.lan/".into()],
        )
    }

    #[test]
    fn the_box_answers_to_its_own_names_only() {
        let g = guard();
        for ok in [
            None,
            Some("localhost:8000"),
            Some("LOCALHOST."),
            Some("app.localhost"),
            Some("127.0.0.1:8000"),
            Some("127.9.9.9"),
            Some("[::1]:8000"),
            Some("attendance.school.lan"),
        ] {
            assert!(g.host_allowed(ok), "{ok:?}");
        }
        for bad in [
            "rebind.attacker.example:8000",
            "attacker.example",
            "localhost.attacker.example",
            "203.0.113.9",
            "",
            "a b",
            "box:80x",
            "[::1]x",
            "user@localhost",
        ] {
            assert!(!g.host_allowed(Some(bad)), "{bad:?}");
        }
        if let Some(host) = hostname() {
            let short = host.split('.').next().unwrap().to_string();
            assert!(g.host_allowed(Some(&format!("{short}.local:8000"))));
            assert!(g.host_allowed(Some(&host.to_uppercase())));
        }
        // This machine's own addresses are found.
        for ip in machine_addresses() {
            let host = match ip {
                IpAddr::V4(_) => ip.to_string(),
                IpAddr::V6(_) => format!("[{ip}]"),
            };
            assert!(g.host_allowed(Some(&host)), "{host}");
        }
    }

    #[test]
    fn browsers_from_elsewhere_are_told_apart() {
        let g = guard();
        let host = Some("box.local:8000");
        // Not browsers, or the box's own page.
        assert!(!g.cross_site(None, None, false, host));
        assert!(!g.cross_site(None, Some("http://box.local:8000"), false, host));
        assert!(!g.cross_site(
            Some("same-origin"),
            Some("https://BOX.local:8000"),
            true,
            host
        ));
        assert!(!g.cross_site(None, Some("https://office.school.lan"), false, host));
        // Elsewhere.
        assert!(g.cross_site(Some("cross-site"), None, false, host));
        assert!(g.cross_site(None, Some("http://evil.example"), false, host));
        assert!(g.cross_site(None, Some("null"), false, host));
        assert!(g.cross_site(None, Some("https://box.local:8000"), false, host));
        assert!(g.cross_site(None, Some("http://box.local:8000"), false, None));
    }
}
