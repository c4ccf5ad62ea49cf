//! Xauthority files: finding the MIT-MAGIC-COOKIE-1 of a display in a given file, so one
//! process can attach to several displays that each have their own cookie (the control plane
//! drives every desktop; `XAUTHORITY` names only one file per process).

use std::path::Path;

use crate::DesktopError;

const MIT_COOKIE: &[u8] = b"MIT-MAGIC-COOKIE-1";

fn field<'a>(data: &'a [u8], pos: &mut usize) -> Option<&'a [u8]> {
    let len = usize::from(u16::from_be_bytes([*data.get(*pos)?, *data.get(*pos + 1)?]));
    let start = *pos + 2;
    let out = data.get(start..start + len)?;
    *pos = start + len;
    Some(out)
}

/// The MIT-MAGIC-COOKIE-1 for display number `display` in Xauthority `data`: the first entry
/// whose display number matches (or is empty), whatever its host (the caller connects over the
/// local socket). `None` when there is no such entry.
pub fn find_cookie(data: &[u8], display: u32) -> Option<Vec<u8>> {
    let number = display.to_string();
    let mut pos = 0;
    while pos + 2 <= data.len() {
        pos += 2; // family
        let _address = field(data, &mut pos)?;
        let num = field(data, &mut pos)?;
        let name = field(data, &mut pos)?;
        let cookie = field(data, &mut pos)?;
        if (num.is_empty() || num == number.as_bytes()) && name == MIT_COOKIE {
            return Some(cookie.to_vec());
        }
    }
    None
}

/// Reads `path` and returns the cookie for `display`.
pub fn read_cookie(path: &Path, display: u32) -> Result<Vec<u8>, DesktopError> {
    let bad = |reason: String| DesktopError::NoDisplay {
        display: format!(":{display}"),
        reason,
    };
    let data = std::fs::read(path)
        .map_err(|e| bad(format!("cannot read Xauthority {}: {e}", path.display())))?;
    find_cookie(&data, display).ok_or_else(|| {
        bad(format!(
            "Xauthority {} has no MIT-MAGIC-COOKIE-1 for display {display}",
            path.display()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(num: &str, name: &[u8], cookie: &[u8]) -> Vec<u8> {
        let mut v = vec![0xff, 0xff];
        for f in [&b""[..], num.as_bytes(), name, cookie] {
            v.extend_from_slice(&(f.len() as u16).to_be_bytes());
            v.extend_from_slice(f);
        }
        v
    }

    #[test]
    fn finds_the_cookie_of_its_display() {
        let mut data = entry("3", MIT_COOKIE, b"aaaa");
        data.extend(entry("7", b"XDM-AUTHORIZATION-1", b"bbbb"));
        data.extend(entry("7", MIT_COOKIE, b"cccc"));
        assert_eq!(find_cookie(&data, 7).as_deref(), Some(&b"cccc"[..]));
        assert_eq!(find_cookie(&data, 3).as_deref(), Some(&b"aaaa"[..]));
        assert_eq!(find_cookie(&data, 4), None);
        assert_eq!(find_cookie(&data[..5], 3), None, "truncated file");
        assert_eq!(
            find_cookie(&entry("", MIT_COOKIE, b"w"), 9).as_deref(),
            Some(&b"w"[..])
        );
    }
}
