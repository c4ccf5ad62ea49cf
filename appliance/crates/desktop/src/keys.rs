//! Key names: parses xdotool-style combos (`ctrl+shift+t`, `Return`, `super`) into X keysyms.
//!
//! Accepted names, matched case-insensitively unless a single character: every name of X11's
//! `keysymdef.h` / `XF86keysym.h` (what xdotool and `XStringToKeysym` accept: `Return`,
//! `BackSpace`, `Page_Down`, `F5`, `XF86AudioMute`...), common aliases agents use (`enter`,
//! `esc`, `cmd`, `win`, `super`, `option`, `pgdn`, `arrowleft`, `del`...), any single Unicode
//! character (`a`, `T`, `é`, `+`), and raw keysyms as hex (`0xff0d`).

use std::collections::HashMap;
use std::sync::OnceLock;

use crate::error::DesktopError;
use crate::keysym_table::KEYSYMS;

/// One key of a combo: the keysym to press and the name it was resolved to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    /// The X keysym.
    pub keysym: u32,
    /// Canonical X name (`Control_L`, `Return`, `a`), or `U+XXXX` for Unicode keysyms.
    pub name: String,
}

/// Keys pressed together, in order (and released in reverse order): `ctrl+shift+t`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Combo {
    /// The keys, modifiers first as written.
    pub keys: Vec<Key>,
}

impl std::fmt::Display for Combo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.keys.iter().map(|k| k.name.as_str()).collect();
        f.write_str(&names.join("+"))
    }
}

/// Aliases agents use, lower case → X keysym name.
const ALIASES: &[(&str, &str)] = &[
    ("enter", "Return"),
    ("return", "Return"),
    ("ret", "Return"),
    ("esc", "Escape"),
    ("escape", "Escape"),
    ("ctrl", "Control_L"),
    ("control", "Control_L"),
    ("ctl", "Control_L"),
    ("lctrl", "Control_L"),
    ("rctrl", "Control_R"),
    ("shift", "Shift_L"),
    ("lshift", "Shift_L"),
    ("rshift", "Shift_R"),
    ("alt", "Alt_L"),
    ("lalt", "Alt_L"),
    ("ralt", "Alt_R"),
    ("option", "Alt_L"),
    ("opt", "Alt_L"),
    ("altgr", "ISO_Level3_Shift"),
    ("meta", "Meta_L"),
    ("super", "Super_L"),
    ("win", "Super_L"),
    ("windows", "Super_L"),
    ("cmd", "Super_L"),
    ("command", "Super_L"),
    ("os", "Super_L"),
    ("hyper", "Hyper_L"),
    ("bksp", "BackSpace"),
    ("backspace", "BackSpace"),
    ("back_space", "BackSpace"),
    ("del", "Delete"),
    ("delete", "Delete"),
    ("ins", "Insert"),
    ("insert", "Insert"),
    ("pgup", "Prior"),
    ("pageup", "Prior"),
    ("page_up", "Prior"),
    ("pgdn", "Next"),
    ("pgdown", "Next"),
    ("pagedown", "Next"),
    ("page_down", "Next"),
    ("up", "Up"),
    ("down", "Down"),
    ("left", "Left"),
    ("right", "Right"),
    ("arrowup", "Up"),
    ("arrowdown", "Down"),
    ("arrowleft", "Left"),
    ("arrowright", "Right"),
    ("space", "space"),
    ("spacebar", "space"),
    ("tab", "Tab"),
    ("home", "Home"),
    ("end", "End"),
    ("caps", "Caps_Lock"),
    ("capslock", "Caps_Lock"),
    ("numlock", "Num_Lock"),
    ("scrolllock", "Scroll_Lock"),
    ("print", "Print"),
    ("printscreen", "Print"),
    ("prtsc", "Print"),
    ("prtscr", "Print"),
    ("snapshot", "Print"),
    ("pause", "Pause"),
    ("break", "Break"),
    ("menu", "Menu"),
    ("contextmenu", "Menu"),
    ("apps", "Menu"),
    ("plus", "plus"),
    ("minus", "minus"),
    ("volumeup", "XF86AudioRaiseVolume"),
    ("audiovolumeup", "XF86AudioRaiseVolume"),
    ("volumedown", "XF86AudioLowerVolume"),
    ("audiovolumedown", "XF86AudioLowerVolume"),
    ("mute", "XF86AudioMute"),
    ("volumemute", "XF86AudioMute"),
    ("audiovolumemute", "XF86AudioMute"),
    ("mediaplaypause", "XF86AudioPlay"),
    ("mediastop", "XF86AudioStop"),
    ("medianexttrack", "XF86AudioNext"),
    ("mediaprevioustrack", "XF86AudioPrev"),
    ("mediaprevtrack", "XF86AudioPrev"),
    ("browserback", "XF86Back"),
    ("browserforward", "XF86Forward"),
    ("browserrefresh", "XF86Reload"),
    ("browserhome", "XF86HomePage"),
    ("browsersearch", "XF86Search"),
];

fn exact_map() -> &'static HashMap<&'static str, u32> {
    static M: OnceLock<HashMap<&'static str, u32>> = OnceLock::new();
    M.get_or_init(|| KEYSYMS.iter().copied().collect())
}

fn folded_map() -> &'static HashMap<String, &'static str> {
    static M: OnceLock<HashMap<String, &'static str>> = OnceLock::new();
    M.get_or_init(|| {
        let mut m = HashMap::new();
        for (name, _) in KEYSYMS {
            m.entry(name.to_ascii_lowercase()).or_insert(*name);
        }
        m
    })
}

fn reverse_map() -> &'static HashMap<u32, &'static str> {
    static M: OnceLock<HashMap<u32, &'static str>> = OnceLock::new();
    M.get_or_init(|| {
        let mut m = HashMap::new();
        // Prefer the names xdotool users know: first in header order is not kept by the sorted
        // table, so prefer names without a `KP_`/`ISO_` twin by taking the shortest.
        for (name, ks) in KEYSYMS {
            m.entry(*ks)
                .and_modify(|cur: &mut &'static str| {
                    if name.len() < cur.len() {
                        *cur = name;
                    }
                })
                .or_insert(*name);
        }
        // Aliases in the table that read worse than the usual name.
        for (ks, name) in [
            (0xff56u32, "Next"),
            (0xff55, "Prior"),
            (0xff0d, "Return"),
            (0xffe7, "Meta_L"),
        ] {
            m.insert(ks, name);
        }
        m
    })
}

/// The keysym X uses for a character: Latin-1 code points map to themselves, everything else
/// to `0x0100_0000 | codepoint`. Newline and tab map to `Return` and `Tab`; other control
/// characters have no keysym.
pub fn char_to_keysym(c: char) -> Option<u32> {
    let cp = c as u32;
    match c {
        '\n' | '\r' => Some(0xff0d),
        '\t' => Some(0xff09),
        _ if c.is_control() => None,
        _ if (0x20..=0x7e).contains(&cp) || (0xa0..=0xff).contains(&cp) => Some(cp),
        _ => Some(0x0100_0000 | cp),
    }
}

/// The character a keysym produces, for the keysyms [`char_to_keysym`] returns (and `Return`,
/// `Tab`, `KP_*` digits are not covered). Used by observers in tests and by diagnostics.
pub fn keysym_to_char(keysym: u32) -> Option<char> {
    match keysym {
        0xff0d => Some('\n'),
        0xff09 => Some('\t'),
        0x20..=0x7e | 0xa0..=0xff => char::from_u32(keysym),
        0x0100_0100..=0x0110_ffff => char::from_u32(keysym & 0x00ff_ffff),
        _ => None,
    }
}

/// The X name of a keysym (`Return`, `a`, `Control_L`), if it has one.
pub fn keysym_name(keysym: u32) -> Option<&'static str> {
    reverse_map().get(&keysym).copied()
}

fn display_name(keysym: u32) -> String {
    match keysym_name(keysym) {
        Some(n) => n.to_string(),
        None if keysym & 0xff00_0000 == 0x0100_0000 => format!("U+{:04X}", keysym & 0x00ff_ffff),
        None => format!("0x{keysym:x}"),
    }
}

/// Resolves one key name (see the module doc for what is accepted) to its keysym.
pub fn keysym_from_name(name: &str) -> Option<u32> {
    let mut chars = name.chars();
    if let (Some(c), None) = (chars.next(), chars.clone().next()) {
        return char_to_keysym(c);
    }
    if let Some(ks) = exact_map().get(name) {
        return Some(*ks);
    }
    let lower = name.to_ascii_lowercase();
    if let Some((_, target)) = ALIASES.iter().find(|(a, _)| *a == lower) {
        return exact_map().get(target).copied();
    }
    if let Some(real) = folded_map().get(&lower) {
        return exact_map().get(real).copied();
    }
    if let Some(hex) = lower.strip_prefix("0x")
        && let Ok(v) = u32::from_str_radix(hex, 16)
        && v != 0
        && v <= 0x1fff_ffff
    {
        return Some(v);
    }
    None
}

fn levenshtein(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            cur[j] = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// The closest known name to a misspelt one, if any is close enough to be a useful hint.
fn suggest(name: &str) -> Option<String> {
    let lower = name.to_ascii_lowercase();
    let budget = (lower.chars().count() / 3).clamp(1, 3);
    let mut best: Option<(usize, String)> = None;
    let candidates = ALIASES
        .iter()
        .map(|(a, _)| a.to_string())
        .chain(KEYSYMS.iter().map(|(n, _)| n.to_string()));
    for cand in candidates {
        let d = levenshtein(&lower, &cand.to_ascii_lowercase());
        if d <= budget && best.as_ref().is_none_or(|(bd, _)| d < *bd) {
            best = Some((d, cand));
        }
    }
    best.map(|(_, n)| n)
}

fn resolve(name: &str) -> Result<Key, DesktopError> {
    match keysym_from_name(name) {
        Some(keysym) => Ok(Key {
            keysym,
            name: display_name(keysym),
        }),
        None => Err(DesktopError::BadKeyName {
            name: name.to_string(),
            suggestion: suggest(name),
        }),
    }
}

/// Parses one combo such as `ctrl+shift+t`, `Return`, `ctrl++` (ctrl and plus), `ctrl + c`.
pub fn parse_combo(combo: &str) -> Result<Combo, DesktopError> {
    let seq = parse_keys(combo)?;
    match <[Combo; 1]>::try_from(seq) {
        Ok([one]) => Ok(one),
        Err(_) => Err(DesktopError::BadCombo {
            combo: combo.to_string(),
            reason: "expected one combo; separate keys pressed together with '+'".into(),
        }),
    }
}

fn parse_one(combo: &str, whole: &str) -> Result<Combo, DesktopError> {
    let bad = |reason: &str| DesktopError::BadCombo {
        combo: whole.to_string(),
        reason: reason.to_string(),
    };
    let mut names: Vec<&str> = Vec::new();
    if combo == "+" {
        names.push("+");
    } else {
        let (body, trailing_plus) = match combo.strip_suffix("++") {
            Some(b) => (b, true),
            None => (combo, false),
        };
        if !body.is_empty() {
            for part in body.split('+') {
                if part.is_empty() {
                    return Err(bad("empty key name between '+' signs"));
                }
                names.push(part);
            }
        }
        if trailing_plus {
            names.push("+");
        }
    }
    if names.is_empty() {
        return Err(bad("no key given"));
    }
    if names.len() > 8 {
        return Err(bad("more than 8 keys pressed together"));
    }
    let keys = names
        .into_iter()
        .map(resolve)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Combo { keys })
}

/// Parses an xdotool-style key sequence: combos separated by whitespace, pressed one after the
/// other (`ctrl+a Delete`, `Down Down Return`). Spaces around a `+` join (`ctrl + c`).
pub fn parse_keys(keys: &str) -> Result<Vec<Combo>, DesktopError> {
    let tokens: Vec<&str> = keys.split_whitespace().collect();
    if tokens.is_empty() {
        return Err(DesktopError::BadCombo {
            combo: keys.to_string(),
            reason: "no key given".into(),
        });
    }
    if tokens.len() > 64 {
        return Err(DesktopError::BadCombo {
            combo: keys.chars().take(40).collect(),
            reason: "more than 64 combos in one sequence".into(),
        });
    }
    // Merge "ctrl + c", "ctrl+ c", "ctrl +c" into one combo.
    let mut merged: Vec<String> = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let mut cur = tokens[i].to_string();
        i += 1;
        loop {
            let ends_join = cur.len() > 1 && cur.ends_with('+') && !cur.ends_with("++");
            let next_join = i < tokens.len()
                && tokens[i].starts_with('+')
                && (tokens[i] != "+" || i + 1 < tokens.len());
            if ends_join && i < tokens.len() {
                cur.push_str(tokens[i]);
                i += 1;
            } else if next_join {
                cur.push_str(tokens[i]);
                i += 1;
                if cur.ends_with('+') && !cur.ends_with("++") && i < tokens.len() {
                    cur.push_str(tokens[i]);
                    i += 1;
                }
            } else {
                break;
            }
        }
        merged.push(cur);
    }
    merged.iter().map(|c| parse_one(c, keys)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(s: &str) -> Vec<Vec<String>> {
        parse_keys(s)
            .expect("parse")
            .into_iter()
            .map(|c| c.keys.into_iter().map(|k| k.name).collect())
            .collect()
    }

    #[test]
    fn combos_and_aliases() {
        assert_eq!(names("ctrl+shift+t"), [["Control_L", "Shift_L", "t"]]);
        assert_eq!(names("Return"), [["Return"]]);
        assert_eq!(names("enter"), [["Return"]]);
        assert_eq!(names("ESC"), [["Escape"]]);
        assert_eq!(names("cmd+c"), [["Super_L", "c"]]);
        assert_eq!(names("Page_Down"), [["Next"]]);
        assert_eq!(names("pgdn"), [["Next"]]);
        assert_eq!(names("f5"), [["F5"]]);
        assert_eq!(names("backspace"), [["BackSpace"]]);
        assert_eq!(names("ctrl++"), [["Control_L", "plus"]]);
        assert_eq!(names("+"), [["plus"]]);
        assert_eq!(names("ctrl + c"), [["Control_L", "c"]]);
        assert_eq!(
            names("ctrl+a Delete"),
            [vec!["Control_L", "a"], vec!["Delete"]]
        );
        assert_eq!(names("T"), [["T"]]);
        assert_eq!(names("XF86AudioMute"), [["XF86AudioMute"]]);
        assert_eq!(names("é"), [["eacute"]]);
        assert_eq!(names("✓"), [["U+2713"]]);
    }

    #[test]
    fn bad_names_have_suggestions() {
        match parse_combo("ctrl+retrun") {
            Err(DesktopError::BadKeyName { name, suggestion }) => {
                assert_eq!(name, "retrun");
                assert_eq!(suggestion.as_deref(), Some("return"));
            }
            other => panic!("{other:?}"),
        }
        let e = parse_combo("ctrl+Pgae_Up").expect_err("bad");
        assert!(e.to_string().to_lowercase().contains("page_up"), "{e}");
        assert!(matches!(
            parse_combo("ctrl+"),
            Err(DesktopError::BadKeyName { .. }) | Err(DesktopError::BadCombo { .. })
        ));
        assert!(matches!(
            parse_combo("a++b"),
            Err(DesktopError::BadCombo { .. })
        ));
        assert!(matches!(
            parse_combo(""),
            Err(DesktopError::BadCombo { .. })
        ));
        assert!(matches!(
            parse_combo("a b"),
            Err(DesktopError::BadCombo { .. })
        ));
    }

    #[test]
    fn chars_round_trip() {
        for c in ['a', 'Z', 'é', '✓', '日', '😀', ' '] {
            let ks = char_to_keysym(c).expect("keysym");
            assert_eq!(keysym_to_char(ks), Some(c));
        }
        assert_eq!(char_to_keysym('\u{7}'), None);
    }
}
