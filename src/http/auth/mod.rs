//! Who a request comes from: its one credential, checked against the keys or the tickets, with
//! wrong credentials slowed per address.
//!
//! Contract:
//! - A request carries at most one credential: an `X-API-Key` header, an `Authorization` header
//!   (`Bearer <key>`; any other scheme counts as a wrong key), an `api_key` query parameter
//!   (only where keys in URLs are allowed: `FACE_ALLOW_KEY_IN_URL` on the ticket routes), or a
//!   `ticket` query parameter (on the ticket routes: the WebSocket and the live view). Two or
//!   more together are refused (400) before any is checked, so one request cannot try several
//!   guesses. An `api_key` in a URL where it is not allowed is refused (400) with the reason.
//! - [`Auth::identify`] turns the credential into a [`Caller`] (label and role), or says it was
//!   wrong; a wrong one is counted by the [`throttle`] (401 within the allowance, 429 past it).
//! - On a box without keys everyone is [`Caller::anyone`] (admin); tickets still work there,
//!   so the page has one way to open the live view and the WebSocket.

mod keys;
mod role;
mod throttle;
mod tickets;

use std::net::IpAddr;
use std::time::Instant;

use tiny_http::Request;

pub use keys::{
    parse_keys_file, ApiKeys, Caller, KeyError, KeyLine, MIN_KEY_LEN, RECOMMENDED_KEY_LEN,
};
pub use role::Role;
pub use throttle::{Throttle, Verdict};
pub use tickets::{TicketError, Tickets, TTL as TICKET_TTL};

use super::error::ApiError;
use super::query;

/// The query parameter that may carry a key where keys in URLs are allowed.
pub const KEY_PARAM: &str = "api_key";
/// The query parameter that carries a ticket.
pub const TICKET_PARAM: &str = "ticket";

/// The one credential a request carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// No credential.
    None,
    /// An API key (`X-API-Key`, `Authorization: Bearer`, or `?api_key=` where allowed).
    Key(String),
    /// A single-use ticket (`?ticket=`).
    Ticket(String),
}

/// Where a route takes its credential from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sources {
    /// `?ticket=` (the WebSocket and the live view).
    pub ticket: bool,
    /// `?api_key=` (only with `FACE_ALLOW_KEY_IN_URL`, on the ticket routes).
    pub key_in_url: bool,
}

/// The token of an `Authorization: Bearer <token>` value (scheme case-insensitive).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("Bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The credential of a request with these headers and query string.
pub fn credential<'a>(
    headers: impl IntoIterator<Item = (&'a str, &'a str)>,
    query: &str,
    sources: Sources,
) -> Result<Credential, ApiError> {
    let mut found: Vec<Credential> = Vec::new();
    for (name, value) in headers {
        if name.eq_ignore_ascii_case("X-API-Key") {
            found.push(Credential::Key(value.trim().to_string()));
        } else if name.eq_ignore_ascii_case("Authorization") {
            // Another scheme (Basic, say) is a credential too, and a wrong one.
            let token = bearer_token(value).unwrap_or_default();
            found.push(Credential::Key(token.to_string()));
        }
    }
    let keys_in_url = query::count(query, KEY_PARAM);
    if keys_in_url > 0 && !sources.key_in_url {
        return Err(ApiError::BadRequest(format!(
            "an API key in the URL ({KEY_PARAM}=) is refused: send it in the X-API-Key header{}",
            if sources.ticket {
                ", or trade it for a ticket (POST /tickets) and open this with ?ticket= \
                 (FACE_ALLOW_KEY_IN_URL=true accepts keys in URLs here, which is weaker)"
            } else {
                ""
            }
        )));
    }
    for _ in 0..keys_in_url {
        let key = query::value(query, KEY_PARAM).unwrap_or_default();
        found.push(Credential::Key(key));
    }
    if sources.ticket {
        for _ in 0..query::count(query, TICKET_PARAM) {
            let ticket = query::value(query, TICKET_PARAM).unwrap_or_default();
            found.push(Credential::Ticket(ticket));
        }
    }
    if found.len() > 1 {
        return Err(ApiError::BadRequest(format!(
            "{} credentials in one request; send exactly one (X-API-Key, Authorization: Bearer, \
             or a ticket)",
            found.len()
        )));
    }
    Ok(found.pop().unwrap_or(Credential::None))
}

/// The headers of a tiny_http request as name/value pairs.
pub fn header_pairs(request: &Request) -> impl Iterator<Item = (&str, &str)> {
    request
        .headers()
        .iter()
        .map(|h| (h.field.as_str().as_str(), h.value.as_str()))
}

/// What a credential turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// A valid key or ticket (or anyone, on a box without keys).
    Known(Caller),
    /// No credential at all.
    Anonymous,
    /// A wrong key or ticket: 401, or 429 past the allowance.
    Wrong(Verdict),
}

/// The keys, the tickets and the throttle of a running server.
#[derive(Default)]
pub struct Auth {
    keys: ApiKeys,
    tickets: Tickets,
    throttle: Throttle,
    key_in_url: bool,
}

impl Auth {
    /// Checks against `keys`; `key_in_url` lets `?api_key=` in (`FACE_ALLOW_KEY_IN_URL`).
    pub fn new(keys: ApiKeys, key_in_url: bool) -> Auth {
        Auth {
            keys,
            key_in_url,
            ..Auth::default()
        }
    }

    /// The keys configured.
    pub fn keys(&self) -> &ApiKeys {
        &self.keys
    }

    /// Whether keys are configured (else everyone is admin).
    pub fn required(&self) -> bool {
        !self.keys.is_empty()
    }

    /// The wrong-key throttle.
    pub fn throttle(&self) -> &Throttle {
        &self.throttle
    }

    /// Where a route takes credentials from: tickets where `tickets`, keys in URLs there too
    /// when allowed.
    pub fn sources(&self, tickets: bool) -> Sources {
        Sources {
            ticket: tickets,
            key_in_url: tickets && self.key_in_url,
        }
    }

    /// Who `credential` belongs to, from address `ip`.
    pub fn identify(&self, credential: Credential, ip: Option<IpAddr>) -> Identity {
        let now = Instant::now();
        let known = match credential {
            Credential::Ticket(t) => self.tickets.redeem(&t, now).or_else(|| {
                // An unknown ticket on a box without keys is no guess: anyone is admin there.
                (!self.required()).then(Caller::anyone)
            }),
            _ if !self.required() => Some(Caller::anyone()),
            Credential::None => return Identity::Anonymous,
            Credential::Key(k) => self.keys.identify(&k).cloned(),
        };
        match known {
            Some(caller) => Identity::Known(caller),
            None => Identity::Wrong(self.throttle.failed(ip, now)),
        }
    }

    /// A ticket for `caller`.
    pub fn ticket(&self, caller: &Caller) -> Result<String, TicketError> {
        self.tickets.issue(caller, Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TICKETED: Sources = Sources {
        ticket: true,
        key_in_url: false,
    };
    const PLAIN: Sources = Sources {
        ticket: false,
        key_in_url: false,
    };

    fn cred<'a>(
        headers: impl IntoIterator<Item = (&'a str, &'a str)>,
        query: &str,
        sources: Sources,
    ) -> Option<Credential> {
        credential(headers, query, sources).ok()
    }

    #[test]
    fn one_credential_per_request() {
        let key = |k: &str| Some(Credential::Key(k.into()));
        assert_eq!(cred([("x-api-key", " k ")], "", PLAIN), key("k"));
        assert_eq!(
            cred([("Authorization", "bearer   abc ")], "", PLAIN),
            key("abc")
        );
        assert_eq!(cred([("Authorization", "Basic abc")], "", PLAIN), key(""));
        assert_eq!(cred([("Accept", "*/*")], "", PLAIN), Some(Credential::None));
        assert_eq!(
            cred([], "ticket=t1", TICKETED),
            Some(Credential::Ticket("t1".into()))
        );
        // A ticket parameter elsewhere is not a credential.
        assert_eq!(cred([], "ticket=t1", PLAIN), Some(Credential::None));
        for (headers, query) in [
            (vec![("X-API-Key", "a"), ("X-API-Key", "b")], ""),
            (vec![("X-API-Key", "a"), ("Authorization", "Bearer b")], ""),
            (vec![("X-API-Key", "a")], "ticket=t"),
            (vec![], "ticket=a&ticket=b"),
        ] {
            let got = credential(headers.clone(), query, TICKETED);
            assert!(
                matches!(&got, Err(ApiError::BadRequest(m)) if m.contains("credentials")),
                "{headers:?} {query}: {got:?}"
            );
        }
    }

    #[test]
    fn keys_in_urls_only_where_allowed() {
        let refused = credential([], "api_key=abc", TICKETED).unwrap_err();
        assert!(refused.to_string().contains("POST /tickets"), "{refused}");
        assert!(credential([], "api_key=abc", PLAIN).is_err());
        let allowed = Sources {
            ticket: true,
            key_in_url: true,
        };
        assert_eq!(
            cred([], "api_key=a%2Bb", allowed),
            Some(Credential::Key("a+b".into()))
        );
        assert!(credential([("X-API-Key", "k")], "api_key=k", allowed).is_err());
    }

    #[test]
    fn identities() {
        let line = KeyLine {
            origin: "t".into(),
            label: "hall".into(),
            role: Role::Viewer,
            key: "hall-key-0123456789".into(),
        };
        let auth = Auth::new(ApiKeys::new(vec![line]).unwrap(), false);
        let hall = Caller::new("hall", Role::Viewer);
        let ip = Some(IpAddr::from([10, 0, 0, 1]));
        assert_eq!(
            auth.identify(Credential::Key("hall-key-0123456789".into()), ip),
            Identity::Known(hall.clone())
        );
        assert_eq!(auth.identify(Credential::None, ip), Identity::Anonymous);
        assert_eq!(
            auth.identify(Credential::Key("nope".into()), ip),
            Identity::Wrong(Verdict::Refuse)
        );
        let ticket = auth.ticket(&hall).unwrap();
        assert_eq!(
            auth.identify(Credential::Ticket(ticket.clone()), ip),
            Identity::Known(hall)
        );
        assert_eq!(
            auth.identify(Credential::Ticket(ticket), ip),
            Identity::Wrong(Verdict::Refuse)
        );
        let open = Auth::default();
        assert_eq!(
            open.identify(Credential::None, ip),
            Identity::Known(Caller::anyone())
        );
        assert_eq!(
            open.identify(Credential::Ticket("stale".into()), ip),
            Identity::Known(Caller::anyone())
        );
    }
}
