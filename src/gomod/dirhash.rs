//! The go.sum `h1:` hash (x/mod's `dirhash.Hash1`): SHA-256 over lines
//! `<hex SHA-256 of a file>  <file name>\n`, one per file in name order,
//! in standard base64 after `h1:`. A module zip's hash covers every entry
//! under its zip name (`module@version/...`, as `dirhash.HashZip` reads
//! them); a `.mod` file's hash covers one file named `go.mod` (as cmd/go's
//! `goModSum` does).
//!
//! Owns reading the zip's entries (stored or deflated) in bounded pieces,
//! checking each one's length and CRC-32 as Go's zip reader does. Never
//! trusts a size or offset from the archive without checking it against
//! the buffer, and never inflates more than an entry declares.

use base64::Engine as _;
use miniz_oxide::inflate::stream::{inflate, InflateState};
use miniz_oxide::{DataFormat, MZFlush, MZStatus};
use sha2::{Digest, Sha256};

use super::zip::{central_directory, ZipError};

const LOCAL_SIG: u32 = 0x0403_4b50;
const LOCAL_HEADER_LEN: usize = 30;

/// Hash1 of files given as (name, SHA-256 of contents), in any order.
/// `None` when a name holds a newline (`dirhash` refuses those).
pub fn hash1(files: &mut [(&str, [u8; 32])]) -> Option<String> {
    files.sort_by(|a, b| a.0.cmp(b.0));
    let mut summary = Sha256::new();
    for (name, sha) in files.iter() {
        if name.contains('\n') {
            return None;
        }
        for b in sha {
            summary.update([HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
        }
        summary.update(b"  ");
        summary.update(name.as_bytes());
        summary.update(b"\n");
    }
    Some(format!("h1:{}", base64::engine::general_purpose::STANDARD.encode(summary.finalize())))
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The `h1:` of a module's `.mod` file (go.sum's `/go.mod` line).
pub fn hash_go_mod(go_mod: &[u8]) -> String {
    let sha: [u8; 32] = Sha256::digest(go_mod).into();
    // A fixed name holds no newline.
    hash1(&mut [("go.mod", sha)]).unwrap_or_default()
}

/// The `h1:` of a module zip (go.sum's line without `/go.mod`).
pub fn hash_zip(zip: &[u8]) -> Result<String, ZipError> {
    let entries = central_directory(zip)?;
    let mut files = Vec::with_capacity(entries.len());
    for entry in &entries {
        let name = std::str::from_utf8(entry.name).map_err(|_| bad(entry.name, "file name is not UTF-8"))?;
        let data = local_data(zip, entry.local_offset as usize, entry.compressed_size as usize)
            .ok_or_else(|| bad(entry.name, "entry data outside the file"))?;
        let sha = match entry.method {
            0 => stored_sha(data, entry.size, entry.crc32),
            8 => inflated_sha(data, entry.size, entry.crc32),
            _ => Err("compression method is neither stored nor deflate"),
        }
        .map_err(|why| bad(entry.name, why))?;
        files.push((name, sha));
    }
    hash1(&mut files).ok_or(ZipError::BadEntry { name: String::new(), reason: "file name holds a newline".into() })
}

fn bad(name: &[u8], reason: &str) -> ZipError {
    ZipError::BadEntry { name: String::from_utf8_lossy(name).into_owned(), reason: reason.to_string() }
}

/// The entry's data: after its local header (whose own name and extra
/// lengths may differ from the directory's), `len` bytes.
fn local_data(zip: &[u8], at: usize, len: usize) -> Option<&[u8]> {
    let header = zip.get(at..at.checked_add(LOCAL_HEADER_LEN)?)?;
    if u32::from_le_bytes(header[0..4].try_into().ok()?) != LOCAL_SIG {
        return None;
    }
    let name_len = u16::from_le_bytes(header[26..28].try_into().ok()?) as usize;
    let extra_len = u16::from_le_bytes(header[28..30].try_into().ok()?) as usize;
    let start = at + LOCAL_HEADER_LEN + name_len + extra_len;
    zip.get(start..start.checked_add(len)?)
}

fn stored_sha(data: &[u8], size: u32, crc32: u32) -> Result<[u8; 32], &'static str> {
    if data.len() != size as usize {
        return Err("stored size differs from its declared size");
    }
    if crc32fast::hash(data) != crc32 {
        return Err("checksum error");
    }
    Ok(Sha256::digest(data).into())
}

/// Inflates `data` in 64 KiB pieces into the hash, never past `size` bytes.
fn inflated_sha(data: &[u8], size: u32, crc32: u32) -> Result<[u8; 32], &'static str> {
    let mut state = InflateState::new_boxed(DataFormat::Raw);
    let mut out = vec![0u8; 64 << 10];
    let (mut sha, mut crc, mut produced) = (Sha256::new(), crc32fast::Hasher::new(), 0u64);
    let mut input = data;
    loop {
        let r = inflate(&mut state, input, &mut out, MZFlush::None);
        input = &input[r.bytes_consumed..];
        let piece = &out[..r.bytes_written];
        produced += piece.len() as u64;
        if produced > size as u64 {
            return Err("inflates to more than its declared size");
        }
        sha.update(piece);
        crc.update(piece);
        match r.status {
            Ok(MZStatus::StreamEnd) => break,
            Ok(_) if r.bytes_consumed == 0 && r.bytes_written == 0 => return Err("deflate data ends early"),
            Ok(_) => {}
            Err(_) => return Err("invalid deflate data"),
        }
    }
    if produced != size as u64 {
        return Err("inflates to less than its declared size");
    }
    if crc.finalize() != crc32 {
        return Err("checksum error");
    }
    Ok(sha.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// x/mod's dirhash test: two files, the hash over their listing.
    #[test]
    fn hash1_is_sha256_over_sorted_listing_lines() {
        let a: [u8; 32] = Sha256::digest(b"data for xyz").into();
        let b: [u8; 32] = Sha256::digest(b"data for abc").into();
        let got = hash1(&mut [("xyz", a), ("abc", b)]).unwrap();
        let listing = format!("{}  abc\n{}  xyz\n", hex(&b), hex(&a));
        let want = format!("h1:{}", base64::engine::general_purpose::STANDARD.encode(Sha256::digest(listing.as_bytes())));
        assert_eq!(got, want);
        assert!(hash1(&mut [("a\nb", a)]).is_none());
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn hostile_zips_are_refused_not_hashed() {
        assert!(hash_zip(b"not a zip").is_err());
        assert!(hash_zip(&[]).is_err());
    }
}
