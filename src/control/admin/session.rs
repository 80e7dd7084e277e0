//! Browser sessions of the status page: `POST /login` trades the admin token for a random
//! session id in an `HttpOnly; SameSite=Strict; Path=/` cookie, kept here on the control
//! thread with its expiry and its CSRF token; `POST /logout` ends it.
//!
//! Invariants: a session id and a CSRF token are 32 bytes from the OS (`getrandom`), hex; the
//! cookie never holds the token, and no token ever travels in a URL. Ids and CSRF tokens are
//! compared in constant time (`secret::same`). A session is bound to the admin token it was
//! opened with (its SHA-256): a reload that changes the token ends every session. Sessions
//! expire after [`SESSION_TTL`]; at most [`MAX_SESSIONS`] live at once (the oldest makes room).
//! A request authenticated by a session cookie must send its CSRF token in `x-csrf-token` for
//! anything but `GET`/`HEAD` (`admin::credentials` checks it); bearer requests need none.
//! Not here: checking bearer tokens (`admin::authorized`), the pages (`status`).

use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// The cookie's name.
pub(super) const COOKIE: &str = "sar_admin_session";
/// How long a session lives after sign-in.
pub(super) const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Live sessions at most (a new one evicts the oldest).
pub(super) const MAX_SESSIONS: usize = 32;

/// One signed-in browser.
#[derive(Clone)]
pub(super) struct Session {
    id: String,
    /// The CSRF token the page sends back in `x-csrf-token`.
    pub(super) csrf: String,
    expires: Instant,
    /// SHA-256 of the admin token it signed in with.
    token: [u8; 32],
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

/// The live sessions, oldest first.
#[derive(Debug, Default)]
pub(crate) struct Sessions(Vec<Session>);

/// 32 random bytes as hex; `None` when the OS has no randomness to give.
fn random_hex() -> Option<String> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).ok()?;
    Some(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn digest(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

impl Sessions {
    /// Opens a session for a browser that presented `token` (already checked); `None` when
    /// the OS gives no randomness.
    pub(super) fn open(&mut self, token: &[u8], now: Instant) -> Option<Session> {
        self.0.retain(|s| s.expires > now);
        if self.0.len() >= MAX_SESSIONS {
            self.0.remove(0);
        }
        let s = Session {
            id: random_hex()?,
            csrf: random_hex()?,
            expires: now + SESSION_TTL,
            token: digest(token),
        };
        self.0.push(s.clone());
        Some(s)
    }

    /// The live session a `Cookie` header names, opened with the current admin `token`.
    pub(super) fn find(&self, cookie: &[u8], token: &[u8], now: Instant) -> Option<&Session> {
        let id = cookie_value(cookie, COOKIE)?;
        let t = digest(token);
        self.0.iter().find(|s| {
            s.expires > now
                && crate::secret::same(s.id.as_bytes(), id)
                && crate::secret::same(&s.token, &t)
        })
    }

    /// Ends the session a `Cookie` header names, if any.
    pub(super) fn close(&mut self, cookie: &[u8]) {
        if let Some(id) = cookie_value(cookie, COOKIE) {
            self.0.retain(|s| !crate::secret::same(s.id.as_bytes(), id));
        }
    }
}

impl Session {
    /// The `Set-Cookie` value that hands this session to the browser.
    pub(super) fn set_cookie(&self) -> Vec<u8> {
        format!(
            "{COOKIE}={}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
            self.id,
            SESSION_TTL.as_secs()
        )
        .into_bytes()
    }
}

/// The `Set-Cookie` value that makes the browser forget its session.
pub(super) fn clear_cookie() -> Vec<u8> {
    format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0").into_bytes()
}

/// The value of cookie `name` in a `Cookie` header (`a=1; b=2`).
fn cookie_value<'a>(header: &'a [u8], name: &str) -> Option<&'a [u8]> {
    header.split(|b| *b == b';').find_map(|pair| {
        let pair = pair.trim_ascii();
        let eq = pair.iter().position(|b| *b == b'=')?;
        (&pair[..eq] == name.as_bytes()).then(|| pair[eq + 1..].trim_ascii())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_found_by_its_cookie_and_token_only() {
        let mut ss = Sessions::default();
        let now = Instant::now();
        let s = ss.open(b"token-one-0123456789", now).expect("randomness");
        assert_eq!((s.id.len(), s.csrf.len()), (64, 64));
        assert_ne!(s.id, s.csrf);
        let cookie = format!("other=1; {COOKIE}={}; x=y", s.id);
        assert!(
            ss.find(cookie.as_bytes(), b"token-one-0123456789", now)
                .is_some()
        );
        // Another token (a reload changed it), a wrong id, or later than the expiry: none.
        assert!(
            ss.find(cookie.as_bytes(), b"token-two-0123456789", now)
                .is_none()
        );
        assert!(
            ss.find(b"sar_admin_session=00", b"token-one-0123456789", now)
                .is_none()
        );
        let late = now + SESSION_TTL + Duration::from_secs(1);
        assert!(
            ss.find(cookie.as_bytes(), b"token-one-0123456789", late)
                .is_none()
        );
        ss.close(cookie.as_bytes());
        assert!(
            ss.find(cookie.as_bytes(), b"token-one-0123456789", now)
                .is_none()
        );
        let set = String::from_utf8(s.set_cookie()).unwrap();
        for flag in ["HttpOnly", "SameSite=Strict", "Path=/"] {
            assert!(set.contains(flag), "{set}");
        }
    }

    #[test]
    fn sessions_are_bounded() {
        let mut ss = Sessions::default();
        let now = Instant::now();
        for _ in 0..MAX_SESSIONS + 5 {
            ss.open(b"t", now);
        }
        assert_eq!(ss.0.len(), MAX_SESSIONS);
    }
}
