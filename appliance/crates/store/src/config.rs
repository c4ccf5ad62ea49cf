//! Config: configuration values (JSON) by key.

use redb::ReadableTable;

use crate::StoreError;
use crate::db::Store;
use crate::tables::{CONFIG, dec, enc};

impl Store {
    /// Sets a configuration value.
    pub async fn put_config(&self, key: &str, value: serde_json::Value) -> Result<(), StoreError> {
        let key = key.to_owned();
        self.write(move |w| {
            w.open_table(CONFIG)?
                .insert(key.as_str(), enc(&value)?.as_slice())?;
            Ok(())
        })
        .await
    }

    /// A configuration value.
    pub fn get_config(&self, key: &str) -> Result<Option<serde_json::Value>, StoreError> {
        self.read(|r| {
            let t = r.open_table(CONFIG)?;
            t.get(key)?.map(|v| dec("config", v.value())).transpose()
        })
    }

    /// All configuration values, ordered by key.
    pub fn list_config(&self) -> Result<Vec<(String, serde_json::Value)>, StoreError> {
        self.read(|r| {
            let t = r.open_table(CONFIG)?;
            t.iter()?
                .map(|e| {
                    let (k, v) = e?;
                    Ok((k.value().to_owned(), dec("config", v.value())?))
                })
                .collect()
        })
    }

    /// Removes a configuration value; `NotFound` if absent.
    pub async fn delete_config(&self, key: &str) -> Result<(), StoreError> {
        let key = key.to_owned();
        self.write(move |w| match w.open_table(CONFIG)?.remove(key.as_str())? {
            Some(_) => Ok(()),
            None => Err(StoreError::NotFound(format!("config key {key}"))),
        })
        .await
    }
}
