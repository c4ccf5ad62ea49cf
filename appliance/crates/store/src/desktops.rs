//! Desktops: the control plane's record of each `desktop@N` it spawned, adopted or handed out.

use redb::{ReadableTable, ReadableTableMetadata};

use crate::StoreError;
use crate::db::Store;
use crate::records::DesktopRecord;
use crate::tables::{DESKTOPS, dec, enc};

impl Store {
    /// Writes (inserts or replaces) a desktop record.
    pub async fn put_desktop(&self, d: DesktopRecord) -> Result<(), StoreError> {
        self.write(move |w| {
            w.open_table(DESKTOPS)?.insert(d.n, enc(&d)?.as_slice())?;
            Ok(())
        })
        .await
    }

    /// Removes desktop `n`'s record (absent is fine).
    pub async fn delete_desktop(&self, n: u32) -> Result<(), StoreError> {
        self.write(move |w| {
            w.open_table(DESKTOPS)?.remove(n)?;
            Ok(())
        })
        .await
    }

    /// Desktop `n`'s record.
    pub fn get_desktop(&self, n: u32) -> Result<Option<DesktopRecord>, StoreError> {
        self.read(|r| {
            let t = r.open_table(DESKTOPS)?;
            t.get(n)?.map(|v| dec("desktops", v.value())).transpose()
        })
    }

    /// Every desktop record, by number.
    pub fn list_desktops(&self) -> Result<Vec<DesktopRecord>, StoreError> {
        self.read(|r| {
            let t = r.open_table(DESKTOPS)?;
            let mut out = Vec::with_capacity(usize::try_from(t.len()?).unwrap_or(0));
            for e in t.iter()? {
                let (_, v) = e?;
                out.push(dec("desktops", v.value())?);
            }
            Ok(out)
        })
    }
}
