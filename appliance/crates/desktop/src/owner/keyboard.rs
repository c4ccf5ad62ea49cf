//! Keyboard input: the core keymap, XTEST key events, and typing any Unicode text by remapping
//! spare keycodes (all at once, one sync), restored after use.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use x11rb::connection::Connection;
use x11rb::protocol::xproto::{self, ConnectionExt as _};
use x11rb::rust_connection::RustConnection;

use super::{Owner, text_keysyms};
use crate::error::DesktopError;
use crate::keys::Combo;

/// How long a remapped spare keycode keeps its keysym after its last use, so clients that
/// translate key events late (Chromium does) still see the mapping that was current.
const RESTORE_DELAY: Duration = Duration::from_millis(300);
/// Minimum time between the last key event on a spare keycode and remapping it to another
/// keysym (only when more distinct characters are needed than there are spare keycodes).
const REMAP_GAP: Duration = Duration::from_millis(60);
/// Wait after giving a spare keycode a different keysym than it had before, before typing on
/// it: clients such as Chromium cache keycode translations and refresh them asynchronously.
const REMAP_SETTLE: Duration = Duration::from_millis(100);

/// Core keyboard mapping plus our spare-keycode remaps.
pub(super) struct Keyboard {
    min: u8,
    per: usize,
    syms: Vec<u32>,
    /// keysym -> (keycode, needs Shift)
    index: HashMap<u32, (u8, bool)>,
    /// Keycodes we may remap (no keysym of their own).
    pub(super) spare: Vec<u8>,
    /// Our current remaps: keycode -> keysym.
    mapped: HashMap<u8, u32>,
    /// Last key event sent on each remapped keycode.
    last_used: HashMap<u8, Instant>,
    pub(super) restore_at: Option<Instant>,
    pub(super) dirty: bool,
}

impl Keyboard {
    pub(super) fn load(
        conn: &RustConnection,
        mapped: HashMap<u8, u32>,
    ) -> Result<Keyboard, DesktopError> {
        let setup = conn.setup();
        let (min, max) = (setup.min_keycode, setup.max_keycode);
        let r = conn.get_keyboard_mapping(min, max - min + 1)?.reply()?;
        let per = usize::from(r.keysyms_per_keycode).max(1);
        let syms = r.keysyms;
        let mut index = HashMap::new();
        let mut spare = Vec::new();
        for level in 0..2.min(per) {
            for (i, chunk) in syms.chunks(per).enumerate() {
                let kc = min.wrapping_add(i as u8);
                let ks = chunk[level];
                if ks != 0 {
                    index.entry(ks).or_insert((kc, level == 1));
                }
            }
        }
        for (i, chunk) in syms.chunks(per).enumerate() {
            let kc = min.wrapping_add(i as u8);
            if chunk.iter().all(|&k| k == 0) || mapped.contains_key(&kc) {
                spare.push(kc);
            }
        }
        // Our own remaps resolve to level 0 of their keycode.
        for (&kc, &ks) in &mapped {
            index.insert(ks, (kc, false));
        }
        Ok(Keyboard {
            min,
            per,
            syms,
            index,
            spare,
            mapped,
            last_used: HashMap::new(),
            restore_at: None,
            dirty: false,
        })
    }

    fn keysym_at(&self, kc: u8, level: usize) -> u32 {
        let i = usize::from(kc.wrapping_sub(self.min)) * self.per + level;
        self.syms.get(i).copied().unwrap_or(0)
    }
}

impl Owner {
    pub(super) fn key_event(&mut self, kc: u8, down: bool) -> Result<(), DesktopError> {
        if down {
            self.fake(xproto::KEY_PRESS_EVENT, kc, 0, 0)?;
            if !self.held_keys.contains(&kc) {
                self.held_keys.push(kc);
            }
        } else {
            self.fake(xproto::KEY_RELEASE_EVENT, kc, 0, 0)?;
            self.held_keys.retain(|&x| x != kc);
        }
        if self.kb.mapped.contains_key(&kc) {
            self.kb.last_used.insert(kc, Instant::now());
        }
        Ok(())
    }

    fn refresh_keymap(&mut self) -> Result<(), DesktopError> {
        if self.kb.dirty {
            let mapped = std::mem::take(&mut self.kb.mapped);
            let last_used = std::mem::take(&mut self.kb.last_used);
            let restore_at = self.kb.restore_at;
            // Keep only remaps the server still has (someone else may have changed the map).
            let mut kb = Keyboard::load(&self.conn, HashMap::new())?;
            let still: HashMap<u8, u32> = mapped
                .into_iter()
                .filter(|(kc, ks)| kb.keysym_at(*kc, 0) == *ks)
                .collect();
            kb = Keyboard::load(&self.conn, still)?;
            kb.last_used = last_used;
            kb.restore_at = restore_at;
            self.kb = kb;
        }
        Ok(())
    }

    fn shift_keycode(&mut self) -> Result<u8, DesktopError> {
        match self.kb.index.get(&0xffe1) {
            Some(&(kc, _)) => Ok(kc),
            None => {
                self.ensure_keysyms(&[0xffe1])?;
                self.kb
                    .index
                    .get(&0xffe1)
                    .map(|&(kc, _)| kc)
                    .ok_or_else(|| DesktopError::Unsupported("no keycode for Shift".into()))
            }
        }
    }

    /// Makes every keysym in `needed` typeable: remaps spare keycodes for those missing from
    /// the keymap (all at once, then one sync, so no client sees a half-done map).
    fn ensure_keysyms(&mut self, needed: &[u32]) -> Result<(), DesktopError> {
        self.refresh_keymap()?;
        let mut missing: Vec<u32> = Vec::new();
        for &ks in needed {
            if !self.kb.index.contains_key(&ks) && !missing.contains(&ks) {
                missing.push(ks);
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        // Keycodes we can use: spare, not holding a keysym needed now, not held down.
        let mut free: Vec<u8> = self
            .kb
            .spare
            .iter()
            .copied()
            .filter(|kc| {
                self.kb.mapped.get(kc).is_none_or(|ks| !needed.contains(ks))
                    && !self.held_keys.contains(kc)
            })
            .collect();
        if free.len() < missing.len() {
            return Err(DesktopError::Unsupported(format!(
                "need {} spare keycodes to type these characters, only {} free",
                missing.len(),
                free.len()
            )));
        }
        // Clients cache keycode translations (Chromium does) and notice remaps late, so for
        // each keysym prefer a keycode that last carried that same keysym, then one never
        // used, then an idle one, and only then the least recently used mapped one.
        let mut plan: Vec<(u32, u8)> = Vec::with_capacity(missing.len());
        for &ks in &missing {
            let hist = &self.key_history;
            let mapped = &self.kb.mapped;
            let pick = free
                .iter()
                .position(|kc| hist.get(kc) == Some(&ks) && !mapped.contains_key(kc))
                .or_else(|| {
                    free.iter()
                        .position(|kc| !hist.contains_key(kc) && !mapped.contains_key(kc))
                })
                .or_else(|| free.iter().position(|kc| !mapped.contains_key(kc)))
                .or_else(|| {
                    free.iter()
                        .enumerate()
                        .min_by_key(|(_, kc)| self.kb.last_used.get(kc).copied())
                        .map(|(i, _)| i)
                });
            let Some(i) = pick else {
                return Err(DesktopError::Unsupported("no spare keycode left".into()));
            };
            plan.push((ks, free.swap_remove(i)));
        }
        let settle = plan
            .iter()
            .any(|(ks, kc)| self.key_history.get(kc).is_some_and(|h| h != ks));
        // Remapping a keycode that was just used could change what a slow client reads for
        // that earlier key event: give it time first.
        let latest = plan
            .iter()
            .filter_map(|(_, kc)| self.kb.last_used.get(kc))
            .max()
            .copied();
        if let Some(t) = latest {
            self.conn.flush()?;
            let wait = REMAP_GAP.saturating_sub(t.elapsed());
            if !wait.is_zero() {
                std::thread::sleep(wait);
            }
        }
        let per = self.kb.per;
        for &(ks, kc) in &plan {
            self.key_history.insert(kc, ks);
            let mut syms = vec![0u32; per];
            syms[0] = ks;
            if per > 1 {
                syms[1] = ks;
            }
            self.conn.change_keyboard_mapping(1, kc, per as u8, &syms)?;
            if let Some(old) = self.kb.mapped.insert(kc, ks) {
                self.kb.index.remove(&old);
            }
            self.kb.index.insert(ks, (kc, false));
            let base = usize::from(kc.wrapping_sub(self.kb.min)) * per;
            if let Some(slot) = self.kb.syms.get_mut(base..base + per) {
                slot.copy_from_slice(&syms);
            }
        }
        self.sync()?;
        if settle {
            // A keycode changes meaning: let clients drop their cached translation first.
            std::thread::sleep(REMAP_SETTLE);
        }
        // Our own change produces MappingNotify; the map we hold is already current.
        self.drain_events();
        self.kb.dirty = false;
        self.kb.restore_at = Some(Instant::now() + RESTORE_DELAY);
        Ok(())
    }

    /// Puts every remapped spare keycode back to NoSymbol.
    pub(super) fn restore_keymap(&mut self) -> Result<(), DesktopError> {
        self.kb.restore_at = None;
        if self.kb.mapped.is_empty() {
            return Ok(());
        }
        let per = self.kb.per;
        let mapped = std::mem::take(&mut self.kb.mapped);
        for (kc, ks) in mapped {
            if self.held_keys.contains(&kc) {
                // Still held down by a key_down: keep it until released.
                self.kb.mapped.insert(kc, ks);
                continue;
            }
            self.conn
                .change_keyboard_mapping(1, kc, per as u8, &vec![0u32; per])?;
            self.kb.index.remove(&ks);
            self.kb.last_used.remove(&kc);
            let base = usize::from(kc.wrapping_sub(self.kb.min)) * per;
            if let Some(slot) = self.kb.syms.get_mut(base..base + per) {
                slot.fill(0);
            }
        }
        if !self.kb.mapped.is_empty() {
            self.kb.restore_at = Some(Instant::now() + RESTORE_DELAY);
        }
        self.sync()?;
        self.drain_events();
        self.kb.dirty = false;
        Ok(())
    }

    fn touch_restore(&mut self) {
        if !self.kb.mapped.is_empty() {
            self.kb.restore_at = Some(Instant::now() + RESTORE_DELAY);
        }
    }

    /// Presses (`down`) and/or releases (`up`) a combo's keys; keys that live on the shifted
    /// level get Shift added unless the combo already holds it.
    pub(super) fn combo(
        &mut self,
        combo: &Combo,
        down: bool,
        up: bool,
    ) -> Result<(), DesktopError> {
        let syms: Vec<u32> = combo.keys.iter().map(|k| k.keysym).collect();
        self.ensure_keysyms(&syms)?;
        let mut plan: Vec<u8> = Vec::new();
        let has_shift = syms.iter().any(|&k| k == 0xffe1 || k == 0xffe2);
        for ks in &syms {
            let (kc, shift) = self.kb.index.get(ks).copied().ok_or_else(|| {
                DesktopError::Unsupported(format!("keysym 0x{ks:x} has no keycode"))
            })?;
            if shift && !has_shift {
                let skc = self.shift_keycode()?;
                if !plan.contains(&skc) {
                    plan.push(skc);
                }
            }
            if !plan.contains(&kc) {
                plan.push(kc);
            }
        }
        if down {
            for &kc in &plan {
                self.key_event(kc, true)?;
            }
        }
        if up {
            for &kc in plan.iter().rev() {
                self.key_event(kc, false)?;
            }
        }
        self.touch_restore();
        Ok(())
    }

    pub(super) fn type_text(
        &mut self,
        text: &str,
        delay: Option<Duration>,
    ) -> Result<(), DesktopError> {
        let syms = text_keysyms(text)?;
        if syms.is_empty() {
            return Ok(());
        }
        self.refresh_keymap()?;
        let pool = self.kb.spare.len();
        let mut i = 0;
        while i < syms.len() {
            // The longest run whose characters missing from the keymap fit the spare pool.
            let mut need: Vec<u32> = Vec::new();
            let mut j = i;
            let mut wants_shift = false;
            while j < syms.len() {
                let ks = syms[j];
                match self.kb.index.get(&ks) {
                    Some(&(kc, shift))
                        if !self.kb.mapped.contains_key(&kc) || need.contains(&ks) =>
                    {
                        wants_shift |= shift;
                    }
                    _ => {
                        if !need.contains(&ks) {
                            if need.len() == pool {
                                break;
                            }
                            need.push(ks);
                        }
                    }
                }
                j += 1;
            }
            if j == i {
                return Err(DesktopError::Unsupported(
                    "no spare keycodes left to type this text".into(),
                ));
            }
            if wants_shift && !self.kb.index.contains_key(&0xffe1) {
                need.push(0xffe1);
            }
            self.ensure_keysyms(&need)?;
            for &ks in &syms[i..j] {
                let (kc, shift) = self.kb.index.get(&ks).copied().ok_or_else(|| {
                    DesktopError::Unsupported(format!("keysym 0x{ks:x} has no keycode"))
                })?;
                let skc = if shift {
                    Some(self.shift_keycode()?)
                } else {
                    None
                };
                if let Some(s) = skc {
                    self.key_event(s, true)?;
                }
                self.key_event(kc, true)?;
                self.key_event(kc, false)?;
                if let Some(s) = skc {
                    self.key_event(s, false)?;
                }
                if let Some(d) = delay
                    && !d.is_zero()
                {
                    self.conn.flush()?;
                    std::thread::sleep(d);
                }
            }
            i = j;
        }
        self.touch_restore();
        Ok(())
    }
}
