//! Signed notes (x/mod's `sumdb/note`): the format a checksum database
//! signs its tree heads in. A note is UTF-8 text ending in a newline, a
//! blank line, then signature lines `— <name> <base64(key hash ‖ sig)>`;
//! a verifier key is `<name>+<hex key hash>+<base64(alg ‖ public key)>`,
//! where the key hash is the first four bytes of SHA-256 over
//! `<name>\n<alg ‖ public key>` and the only algorithm is Ed25519 (1).
//!
//! Owns parsing keys and opening notes with every rule `note.Open` has
//! (control characters, the signature block's shape, at most 100
//! signatures, duplicates ignored). It never fetches a note and never
//! trusts text whose signature it did not check.

use std::fmt;

use base64::Engine as _;
use sha2::{Digest, Sha256};

const ALG_ED25519: u8 = 1;
const SIG_PREFIX: &str = "\u{2014} ";
const MAX_SIGNATURES: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoteError {
    /// A verifier key that is not `name+hash+key`, or whose hash is wrong.
    BadKey(&'static str),
    /// Not a note at all.
    Malformed(&'static str),
    /// Signed by the key we know, but the signature does not verify.
    InvalidSignature,
    /// Well formed, but not signed by the key we know.
    Unverified,
}

impl fmt::Display for NoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NoteError::BadKey(why) => write!(f, "malformed verifier key: {why}"),
            NoteError::Malformed(why) => write!(f, "malformed note: {why}"),
            NoteError::InvalidSignature => f.write_str("invalid signature"),
            NoteError::Unverified => f.write_str("note has no verifiable signature"),
        }
    }
}

impl std::error::Error for NoteError {}

/// A checksum database's public key.
#[derive(Clone, PartialEq, Eq)]
pub struct Verifier {
    name: String,
    key_hash: u32,
    public_key: [u8; 32],
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Verifier({}+{:08x})", self.name, self.key_hash)
    }
}

/// x/mod's `isValidName`: non-empty, no white space, no `+`.
fn is_valid_name(name: &str) -> bool {
    !name.is_empty() && !name.contains(char::is_whitespace) && !name.contains('+')
}

fn key_hash(name: &str, key: &[u8]) -> u32 {
    let digest = Sha256::new().chain_update(name.as_bytes()).chain_update(b"\n").chain_update(key).finalize();
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

impl Verifier {
    /// Parses `name+hash+key` (a `GOSUMDB` key).
    pub fn parse(vkey: &str) -> Result<Verifier, NoteError> {
        let (name, rest) = vkey.split_once('+').ok_or(NoteError::BadKey("expected name+hash+key"))?;
        let (hash16, key64) = rest.split_once('+').ok_or(NoteError::BadKey("expected name+hash+key"))?;
        if !is_valid_name(name) {
            return Err(NoteError::BadKey("invalid name"));
        }
        if hash16.len() != 8 {
            return Err(NoteError::BadKey("the key hash must be 8 hex digits"));
        }
        let hash = u32::from_str_radix(hash16, 16).map_err(|_| NoteError::BadKey("the key hash must be 8 hex digits"))?;
        let key = base64::engine::general_purpose::STANDARD.decode(key64).map_err(|_| NoteError::BadKey("the key is not base64"))?;
        if key.is_empty() {
            return Err(NoteError::BadKey("empty key"));
        }
        if key_hash(name, &key) != hash {
            return Err(NoteError::BadKey("the key hash does not match the key"));
        }
        let public_key: [u8; 32] = match (key[0], key.get(1..).and_then(|k| <[u8; 32]>::try_from(k).ok())) {
            (ALG_ED25519, Some(k)) if key.len() == 33 => k,
            _ => return Err(NoteError::BadKey("unknown key algorithm")),
        };
        Ok(Verifier { name: name.to_string(), key_hash: hash, public_key })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn verifies(&self, text: &[u8], sig: &[u8]) -> bool {
        ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, &self.public_key).verify(text, sig).is_ok()
    }

    /// Opens a signed note: its text (through its final newline) when
    /// `msg` is well formed and carries a valid signature by this key.
    /// Signatures by other keys are ignored, as `note.Open` ignores
    /// unknown verifiers; a bad signature by this key fails the note.
    pub fn open<'a>(&self, msg: &'a [u8]) -> Result<&'a str, NoteError> {
        let msg = std::str::from_utf8(msg).map_err(|_| NoteError::Malformed("not UTF-8"))?;
        if msg.chars().any(|c| c < ' ' && c != '\n') {
            return Err(NoteError::Malformed("control character"));
        }
        let split = msg.rfind("\n\n").ok_or(NoteError::Malformed("no signature block"))?;
        let (text, sigs) = (&msg[..split + 1], &msg[split + 2..]);
        if sigs.is_empty() || !sigs.ends_with('\n') {
            return Err(NoteError::Malformed("signature block does not end in a newline"));
        }
        let mut verified = false;
        for (n, line) in sigs[..sigs.len() - 1].split('\n').enumerate() {
            if n >= MAX_SIGNATURES {
                return Err(NoteError::Malformed("too many signatures"));
            }
            let line = line.strip_prefix(SIG_PREFIX).ok_or(NoteError::Malformed("signature line without its dash"))?;
            let (name, b64) = line.split_once(' ').unwrap_or((line, ""));
            let sig = base64::engine::general_purpose::STANDARD.decode(b64).map_err(|_| NoteError::Malformed("signature is not base64"))?;
            if !is_valid_name(name) || b64.is_empty() || sig.len() < 5 {
                return Err(NoteError::Malformed("bad signature line"));
            }
            let hash = u32::from_be_bytes([sig[0], sig[1], sig[2], sig[3]]);
            if name != self.name || hash != self.key_hash || verified {
                continue;
            }
            if !self.verifies(text.as_bytes(), &sig[4..]) {
                return Err(NoteError::InvalidSignature);
            }
            verified = true;
        }
        if verified {
            Ok(text)
        } else {
            Err(NoteError::Unverified)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::KeyPair as _;

    fn b64(b: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(b)
    }

    /// A key pair of our own, its verifier key text, and a signer.
    fn keys(name: &str) -> (String, impl Fn(&str) -> String) {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let pair = ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let mut key = vec![ALG_ED25519];
        key.extend_from_slice(pair.public_key().as_ref());
        let hash = key_hash(name, &key);
        let vkey = format!("{name}+{hash:08x}+{}", b64(&key));
        let name = name.to_string();
        let sign = move |text: &str| {
            let mut sig = hash.to_be_bytes().to_vec();
            sig.extend_from_slice(pair.sign(text.as_bytes()).as_ref());
            format!("{text}\n\u{2014} {name} {}\n", b64(&sig))
        };
        (vkey, sign)
    }

    const TREE: &str = "go.sum database tree\n5\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n";

    #[test]
    fn a_note_signed_by_the_key_opens_to_its_text() {
        let (vkey, sign) = keys("sum.test.example");
        let v = Verifier::parse(&vkey).unwrap();
        let note = sign(TREE);
        assert_eq!(v.open(note.as_bytes()), Ok(TREE));
        // Another signer's line before ours is ignored.
        let (_, other) = keys("other.example");
        let both = format!("{}{}", other(TREE), &note[TREE.len() + 1..]);
        assert_eq!(v.open(both.as_bytes()), Ok(TREE));
    }

    #[test]
    fn tampered_unsigned_and_malformed_notes_do_not_open() {
        let (vkey, sign) = keys("sum.test.example");
        let v = Verifier::parse(&vkey).unwrap();
        let note = sign(TREE);
        let tampered = note.replacen("\n5\n", "\n6\n", 1);
        assert_eq!(v.open(tampered.as_bytes()), Err(NoteError::InvalidSignature));
        // Our name and key hash, a signature by another key: as bad as a wrong one.
        let (_, stranger) = keys("sum.test.example");
        let forged = stranger(TREE);
        let (head, sig64) = forged.trim_end().rsplit_once(' ').unwrap();
        let mut sig = base64::engine::general_purpose::STANDARD.decode(sig64).unwrap();
        sig[..4].copy_from_slice(&v.key_hash.to_be_bytes());
        let forged = format!("{head} {}\n", b64(&sig));
        assert_eq!(v.open(forged.as_bytes()), Err(NoteError::InvalidSignature));
        // A key that is someone else's is simply not ours.
        let (_, other) = keys("other.example");
        assert_eq!(v.open(other(TREE).as_bytes()), Err(NoteError::Unverified));
        for bad in [&note[..note.len() - 1], TREE, "text\n\nno dash line\n", "a\u{1}b\n\n\u{2014} x AAAAAAA=\n"] {
            assert!(matches!(v.open(bad.as_bytes()), Err(NoteError::Malformed(_))), "{bad:?}");
        }
    }

    #[test]
    fn keys_must_be_well_formed_and_hash_to_their_hash() {
        let (vkey, _) = keys("sum.test.example");
        let (name, rest) = vkey.split_once('+').unwrap();
        let (hash, key) = rest.split_once('+').unwrap();
        assert!(Verifier::parse(&vkey).is_ok());
        let wrong_hash = format!("{name}+{:08x}+{key}", u32::from_str_radix(hash, 16).unwrap() ^ 1);
        assert_eq!(Verifier::parse(&wrong_hash), Err(NoteError::BadKey("the key hash does not match the key")));
        for bad in ["sum.example", "sum.example+abc+AQ==", "+00000000+AQ==", "a b+00000000+AQ==", "sum.example+0000000g+AQ=="] {
            assert!(Verifier::parse(bad).is_err(), "{bad}");
        }
    }
}
