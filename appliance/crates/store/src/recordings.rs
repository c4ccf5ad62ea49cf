//! Recordings: the control plane's record of each desktop recording (state, chapters, pauses),
//! keyed by recording id.

use redb::{ReadableTable, ReadableTableMetadata};

use crate::StoreError;
use crate::db::Store;
use crate::records::RecordingRecord;
use crate::tables::{RECORDINGS, dec, enc};

impl Store {
    /// Writes (inserts or replaces) a recording record.
    pub async fn put_recording(&self, rec: RecordingRecord) -> Result<(), StoreError> {
        self.write(move |w| {
            w.open_table(RECORDINGS)?
                .insert(rec.id.as_str(), enc(&rec)?.as_slice())?;
            Ok(())
        })
        .await
    }

    /// Reads recording `id`, applies `f` and writes it back in one transaction; `NotFound` if
    /// absent. Returns the updated record.
    pub async fn update_recording<F>(&self, id: &str, f: F) -> Result<RecordingRecord, StoreError>
    where
        F: Fn(&mut RecordingRecord) + Send + 'static,
    {
        let id = id.to_owned();
        self.write(move |w| {
            let mut t = w.open_table(RECORDINGS)?;
            let mut rec: RecordingRecord = match t.get(id.as_str())? {
                Some(v) => dec("recordings", v.value())?,
                None => return Err(StoreError::NotFound(format!("recording {id}"))),
            };
            f(&mut rec);
            t.insert(id.as_str(), enc(&rec)?.as_slice())?;
            Ok(rec)
        })
        .await
    }

    /// Removes recording `id`'s record (absent is fine).
    pub async fn delete_recording(&self, id: &str) -> Result<(), StoreError> {
        let id = id.to_owned();
        self.write(move |w| {
            w.open_table(RECORDINGS)?.remove(id.as_str())?;
            Ok(())
        })
        .await
    }

    /// Recording `id`.
    pub fn get_recording(&self, id: &str) -> Result<Option<RecordingRecord>, StoreError> {
        self.read(|r| {
            let t = r.open_table(RECORDINGS)?;
            t.get(id)?.map(|v| dec("recordings", v.value())).transpose()
        })
    }

    /// Every recording, oldest first (by start time).
    pub fn list_recordings(&self) -> Result<Vec<RecordingRecord>, StoreError> {
        self.read(|r| {
            let t = r.open_table(RECORDINGS)?;
            let mut out: Vec<RecordingRecord> =
                Vec::with_capacity(usize::try_from(t.len()?).unwrap_or(0));
            for e in t.iter()? {
                let (_, v) = e?;
                out.push(dec("recordings", v.value())?);
            }
            out.sort_by(|a, b| a.started_at.cmp(&b.started_at).then(a.id.cmp(&b.id)));
            Ok(out)
        })
    }
}
