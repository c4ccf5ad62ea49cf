//! Bundles signed by the real `minisign` tool (Debian's, as `make update-bundle` uses it):
//! verified with the right key, refused with a clear reason otherwise.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::path::Path;
use std::process::Command;

use zigral_update::{UpdateError, public_key_id, verify};

fn minisign(args: &[&str]) {
    let out = Command::new("minisign")
        .args(args)
        .output()
        .expect("minisign is not installed: run scripts/install-deps.sh all");
    assert!(
        out.status.success(),
        "minisign {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn keypair(dir: &Path, name: &str) -> (String, String) {
    let (p, s) = (
        dir.join(format!("{name}.pub")),
        dir.join(format!("{name}.key")),
    );
    minisign(&[
        "-G",
        "-W",
        "-p",
        p.to_str().unwrap(),
        "-s",
        s.to_str().unwrap(),
    ]);
    (p.to_str().unwrap().into(), s.to_str().unwrap().into())
}

fn sign(key: &str, file: &Path, trusted: &str) -> String {
    minisign(&["-S", "-s", key, "-m", file.to_str().unwrap(), "-t", trusted]);
    std::fs::read_to_string(format!("{}.minisig", file.display())).unwrap()
}

#[test]
fn signatures_verify_and_refusals_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let (pub_a, key_a) = keypair(dir.path(), "a");
    let (_, key_b) = keypair(dir.path(), "b");
    let bundle = dir.path().join("x.tar.zst");
    let data: Vec<u8> = (0..600_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&bundle, &data).unwrap();
    let pubtext = std::fs::read_to_string(&pub_a).unwrap();

    let sig = sign(
        &key_a,
        &bundle,
        "zigral-bundle version=1.2.3 serial=5 schema=4 git=abc",
    );
    let m = verify(&pubtext, &sig, &data[..]).expect("verifies");
    assert_eq!((m.version.as_str(), m.serial, m.schema), ("1.2.3", 5, 4));

    // One flipped byte anywhere: a mismatch, not a manifest.
    let mut bad = data.clone();
    bad[400_000] ^= 1;
    assert!(matches!(
        verify(&pubtext, &sig, &bad[..]),
        Err(UpdateError::SignatureMismatch)
    ));

    // Signed by another key: named as such, with both key ids.
    let sig_b = sign(
        &key_b,
        &bundle,
        "zigral-bundle version=1.2.3 serial=5 schema=4 git=abc",
    );
    let e = verify(&pubtext, &sig_b, &data[..]).unwrap_err();
    assert!(matches!(e, UpdateError::WrongKey { .. }), "{e}");
    assert!(
        e.to_string().contains(&public_key_id(&pubtext).unwrap()),
        "{e}"
    );

    // A plain minisign signature without our manifest, and garbage.
    let plain = sign(&key_a, &bundle, "timestamp:1 file:x.tar.zst");
    assert!(matches!(
        verify(&pubtext, &plain, &data[..]),
        Err(UpdateError::BadManifest(_))
    ));
    assert!(matches!(
        verify(&pubtext, "not a signature", &data[..]),
        Err(UpdateError::BadSignatureFile(_))
    ));
    assert!(matches!(
        verify("nonsense", &sig, &data[..]),
        Err(UpdateError::BadKey(_))
    ));
}
