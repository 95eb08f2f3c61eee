//! Identities, and what each may do: API keys (tokens with scopes), dashboard accounts (roles
//! and passwords), and the names both go by. Pure parts, shared by the API that checks them and
//! `pp_storage`, which makes them; the tables are in [`crate::db::identities`].
//!
//! - A token is `ppk_`, 27 base62 characters of 160 random bits, and 6 of a CRC-32 of them: the
//!   prefix lets secret scanners find a leaked one, the checksum lets the API refuse a mistyped or
//!   made-up one without looking it up. Only its SHA-256 is stored ([`token_hash`]).
//! - A password is kept as an Argon2id hash with OWASP's parameters (19 MiB, 2 passes, 1 lane);
//!   checking one takes tens of milliseconds on purpose, and [`verify_password`] takes as long
//!   for a name that has no account ([`dummy_password_hash`]).
//! - A session token is 256 random bits, hex; only its SHA-256 is stored.

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// The reading routes (works, their events, searches, the stats, the dashboard's figures).
    Read,
    /// Creating works and demands.
    Write,
    /// The dashboard's actions: enqueuing demands, retrying and discarding dead letters, and
    /// reading the audit trail.
    Operate,
}

impl Scope {
    pub const ALL: [Scope; 3] = [Scope::Read, Scope::Write, Scope::Operate];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Operate => "operate",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == text.trim())
            .ok_or_else(|| format!("`{text}` is no scope: read, write or operate"))
    }
}

/// A set of scopes, written `read,write`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Scopes(u8);

impl Scopes {
    pub const NONE: Scopes = Scopes(0);

    pub fn of(scopes: &[Scope]) -> Scopes {
        Scopes(
            scopes
                .iter()
                .fold(0, |bits, scope| bits | Scopes::bit(*scope)),
        )
    }

    fn bit(scope: Scope) -> u8 {
        match scope {
            Scope::Read => 1,
            Scope::Write => 2,
            Scope::Operate => 4,
        }
    }

    pub fn contains(self, scope: Scope) -> bool {
        self.0 & Scopes::bit(scope) != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The scopes, in order.
    pub fn list(self) -> Vec<Scope> {
        Scope::ALL
            .into_iter()
            .filter(|scope| self.contains(*scope))
            .collect()
    }

    /// The scopes' names, as the table stores them.
    pub fn names(self) -> Vec<String> {
        self.list()
            .into_iter()
            .map(|s| s.as_str().to_owned())
            .collect()
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.names().join(","))
    }
}

impl FromStr for Scopes {
    type Err = String;

    /// `read,write`: at least one scope, each known.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let scopes = text
            .split(',')
            .map(str::parse)
            .collect::<Result<Vec<Scope>, String>>()?;
        let scopes = Scopes::of(&scopes);
        if scopes.is_empty() {
            return Err("name at least one scope: read, write or operate".to_owned());
        }
        Ok(scopes)
    }
}

/// What an account may do on the dashboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Sees everything, acts on nothing.
    Viewer,
    /// Sees everything and acts: enqueues demands, retries and discards dead letters.
    Operator,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
        }
    }

    /// The scopes the role grants.
    pub fn scopes(self) -> Scopes {
        match self {
            Role::Viewer => Scopes::of(&[Scope::Read]),
            Role::Operator => Scopes::of(&Scope::ALL),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "viewer" => Ok(Role::Viewer),
            "operator" => Ok(Role::Operator),
            _ => Err(format!("`{text}` is no role: viewer or operator")),
        }
    }
}

/// A key's or an account's name: 1 to 64 of `A-Z a-z 0-9 . _ @ -`.
pub fn check_name(name: &str) -> Result<&str, String> {
    let valid = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(&b));
    if valid {
        Ok(name)
    } else {
        Err(format!(
            "`{}` is no name: 1 to 64 letters, digits, `.`, `_`, `@` or `-`",
            name.escape_debug()
        ))
    }
}

/// What every API key starts with.
pub const TOKEN_PREFIX: &str = "ppk_";
/// Base62 characters of a token's random part: 160 bits.
const TOKEN_RANDOM_CHARS: usize = 27;
const TOKEN_RANDOM_BYTES: usize = 20;
/// Base62 characters of a token's checksum: a CRC-32.
const TOKEN_CHECKSUM_CHARS: usize = 6;
/// A token's whole length.
pub const TOKEN_LEN: usize = TOKEN_PREFIX.len() + TOKEN_RANDOM_CHARS + TOKEN_CHECKSUM_CHARS;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A secret: an API key's or a session's token. `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret itself: to show once, or to send.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Its SHA-256, as stored.
    pub fn hash(&self) -> [u8; 32] {
        token_hash(&self.0)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// A secret given to a client (`--api-key`): taken as it is, checked where it is sent, so no
/// error message ever repeats it.
impl FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(Secret(text.to_owned()))
    }
}

/// A new API key's token.
pub fn new_api_token() -> Secret {
    let random: [u8; TOKEN_RANDOM_BYTES] = rand::rng().random();
    let body = base62(&random, TOKEN_RANDOM_CHARS);
    let checksum = base62(&crc32(body.as_bytes()).to_be_bytes(), TOKEN_CHECKSUM_CHARS);
    Secret(format!("{TOKEN_PREFIX}{body}{checksum}"))
}

/// Whether `text` is shaped as an API key's token, its checksum right: what is worth looking up.
pub fn is_api_token(text: &str) -> bool {
    let Some(rest) = text.strip_prefix(TOKEN_PREFIX) else {
        return false;
    };
    if rest.len() != TOKEN_RANDOM_CHARS + TOKEN_CHECKSUM_CHARS
        || !rest.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return false;
    }
    let (body, checksum) = rest.split_at(TOKEN_RANDOM_CHARS);
    base62(&crc32(body.as_bytes()).to_be_bytes(), TOKEN_CHECKSUM_CHARS) == checksum
}

/// A new session's token: 256 random bits, hex.
pub fn new_session_token() -> Secret {
    let random: [u8; 32] = rand::rng().random();
    Secret(random.iter().map(|byte| format!("{byte:02x}")).collect())
}

/// The SHA-256 of a token, as the tables keep it.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// True when `a` and `b` are equal, in a time that depends on their lengths only.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut difference = u8::from(a.len() != b.len());
    for (index, byte) in a.iter().enumerate() {
        let other = b.get(index).copied().unwrap_or(!*byte);
        difference |= std::hint::black_box(byte ^ other);
    }
    difference == 0
}

/// `bytes` as a big-endian number, in exactly `width` base62 digits (leading zeros kept).
fn base62(bytes: &[u8], width: usize) -> String {
    let mut number = bytes.to_vec();
    let mut digits = vec![b'0'; width];
    for digit in digits.iter_mut().rev() {
        let mut remainder: u32 = 0;
        for byte in &mut number {
            let value = (remainder << 8) | u32::from(*byte);
            *byte = u8::try_from(value / 62).expect("a quotient by 62 of a value below 62 * 256");
            remainder = value % 62;
        }
        *digit = BASE62[remainder as usize];
    }
    String::from_utf8(digits).expect("base62 digits are ASCII")
}

/// CRC-32 (IEEE 802.3, as zip and PNG use it).
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0_u32;
    for byte in bytes {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

/// Shortest password an account may have (NIST SP 800-63B asks for 8 at least; a dashboard that
/// can retry and discard deserves more).
pub const MIN_PASSWORD_LEN: usize = 12;
/// Longest: enough for any passphrase, short enough that hashing it costs nothing extra.
pub const MAX_PASSWORD_LEN: usize = 1024;

/// A password an account may have, or why not.
pub fn check_password(password: &str) -> Result<&str, String> {
    let length = password.chars().count();
    if (MIN_PASSWORD_LEN..=MAX_PASSWORD_LEN).contains(&length) {
        Ok(password)
    } else {
        Err(format!(
            "a password has {MIN_PASSWORD_LEN} to {MAX_PASSWORD_LEN} characters, this one {length}"
        ))
    }
}

/// Argon2id with OWASP's parameters: 19 MiB of memory, 2 passes, 1 lane.
fn argon2id() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("OWASP's Argon2 parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// The password's Argon2id hash, in PHC form (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`).
pub fn hash_password(password: &str) -> Result<String, crate::Error> {
    let salt = SaltString::encode_b64(&rand::rng().random::<[u8; 16]>())
        .map_err(|error| crate::Error::Bug(format!("salting a password: {error}")))?;
    argon2id()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|error| crate::Error::Bug(format!("hashing a password: {error}")))
}

/// True when `password` is the one `phc` was made from. A malformed hash matches nothing.
pub fn verify_password(phc: &str, password: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|hash| {
        argon2id()
            .verify_password(password.as_bytes(), &hash)
            .is_ok()
    })
}

/// A hash of a random password nobody knows: checked against when a login names no account, so
/// that takes as long as a wrong password for a real one. Made once, on first use (the API's
/// first login, whatever name it gives, off its workers).
pub fn dummy_password_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let password: [u8; 24] = rand::rng().random();
        let password: String = password.iter().map(|byte| format!("{byte:02x}")).collect();
        // Argon2id with fixed, valid parameters hashes any password: a failure here is memory
        // exhausted, and an empty hash would make unknown names answer fast.
        hash_password(&password).expect("Argon2id hashes a random password")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_token_is_recognised_and_any_change_to_it_is_not() {
        let token = new_api_token();
        let text = token.expose();

        assert_eq!(text.len(), TOKEN_LEN);
        assert!(text.starts_with("ppk_"));
        assert!(is_api_token(text));
        let mut altered = text.as_bytes().to_vec();
        altered[10] = if altered[10] == b'a' { b'b' } else { b'a' };
        assert!(!is_api_token(&String::from_utf8(altered).expect("ASCII")));
        for bad in [
            "",
            "ppk_",
            "ppk_short",
            &text[1..],
            &format!("{text}x"),
            "Bearer x",
        ] {
            assert!(!is_api_token(bad), "{bad:?}");
        }
        assert_ne!(new_api_token(), token, "160 random bits each time");
        assert_eq!(format!("{token:?}"), "Secret(***)");
    }

    #[test]
    fn base62_and_crc32_are_the_usual_ones() {
        assert_eq!(base62(&[0, 0, 0, 61], 3), "00z");
        assert_eq!(base62(&[0, 0, 0, 62], 3), "010");
        assert_eq!(base62(&[255; 20], 27).len(), 27);
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926, "the standard check value");
    }

    #[test]
    fn scopes_and_roles_read_and_write_their_names() {
        let scopes: Scopes = "read,operate".parse().expect("scopes");
        assert!(scopes.contains(Scope::Read) && scopes.contains(Scope::Operate));
        assert!(!scopes.contains(Scope::Write));
        assert_eq!(scopes.to_string(), "read,operate");
        for bad in ["", "read,", "admin", "read,admin"] {
            assert!(bad.parse::<Scopes>().is_err(), "{bad:?}");
        }
        assert_eq!(Role::Viewer.scopes(), Scopes::of(&[Scope::Read]));
        assert_eq!(Role::Operator.scopes().list(), Scope::ALL);
    }

    #[test]
    fn names_are_short_and_plain() {
        assert!(check_name("ci-bot@build.1").is_ok());
        for bad in ["", "a b", "a\nb", "é", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_password_hash_verifies_its_password_only() {
        let hash = hash_password("correct horse battery").expect("a hash");

        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(verify_password(&hash, "correct horse battery"));
        assert!(!verify_password(&hash, "correct horse battery "));
        assert!(!verify_password("not a hash", "anything"));
        assert!(!verify_password(dummy_password_hash(), ""));
        assert!(check_password("short").is_err());
        assert!(check_password("twelve chars").is_ok());
    }

    #[test]
    fn equal_bytes_compare_equal_and_any_difference_does_not() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"", b"a"));
    }
}
