//! Stored responses, for `previous_response_id` and `GET /v1/responses/{id}`.
//!
//! SQLite on disk, so a conversation survives a server restart (OpenAI keeps stored
//! responses for 30 days; clients such as agents rely on continuing them). Each row keeps the
//! response object as returned and its *context*: the items a follow-up continues from
//! (earlier context, this request's input, this response's output as input items).
//!
//! Calls block on SQLite: from async code, run them on a blocking thread.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the folder of the response store {}: {source}", path.display())]
    Folder {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the response store {} is a folder: give the path of a file", path.display())]
    IsFolder { path: PathBuf },
    #[error("cannot open the response store {} (is it an SQLite database?): {source}", path.display())]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("response store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("response store: the row of {id} is not valid JSON: {source}")]
    Corrupt {
        id: String,
        source: serde_json::Error,
    },
}

/// A stored response and what a follow-up continues from.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredResponse {
    pub response: Value,
    pub context: Vec<Value>,
}

pub struct ResponseStore {
    conn: Mutex<Connection>,
}

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS responses (
    id TEXT PRIMARY KEY,
    response TEXT NOT NULL,
    context TEXT NOT NULL,
    stored_at INTEGER NOT NULL DEFAULT (unixepoch())
)";

impl ResponseStore {
    /// Opens (or creates) the store at `path`, creating its folder.
    pub fn open(path: &Path) -> Result<ResponseStore, StoreError> {
        if path.is_dir() {
            return Err(StoreError::IsFolder {
                path: path.to_path_buf(),
            });
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Folder {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let open_err = |source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open(path).map_err(open_err)?;
        // Other connections (a second server on the same file) wait rather than fail.
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(open_err)?;
        // The first statement that reads the file: where a non-database file is found out.
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get::<_, String>(0))
            .map_err(open_err)?;
        conn.execute_batch(SCHEMA).map_err(open_err)?;
        Ok(ResponseStore {
            conn: Mutex::new(conn),
        })
    }

    /// A store that lives as long as the process (`--no-store-file`, tests).
    pub fn in_memory() -> Result<ResponseStore, StoreError> {
        let conn = Connection::open_in_memory()?;
        conn.execute_batch(SCHEMA)?;
        Ok(ResponseStore {
            conn: Mutex::new(conn),
        })
    }

    /// Stores (or replaces) response `id`.
    pub fn put(&self, id: &str, response: &Value, context: &[Value]) -> Result<(), StoreError> {
        let context = Value::Array(context.to_vec());
        self.lock().execute(
            "INSERT INTO responses (id, response, context) VALUES (?1, ?2, ?3)
             ON CONFLICT(id) DO UPDATE SET response = excluded.response,
                 context = excluded.context, stored_at = unixepoch()",
            params![id, response.to_string(), context.to_string()],
        )?;
        Ok(())
    }

    pub fn get(&self, id: &str) -> Result<Option<StoredResponse>, StoreError> {
        let row: Option<(String, String)> = self
            .lock()
            .query_row(
                "SELECT response, context FROM responses WHERE id = ?1",
                params![id],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()?;
        let Some((response, context)) = row else {
            return Ok(None);
        };
        let corrupt = |source| StoreError::Corrupt {
            id: id.to_string(),
            source,
        };
        Ok(Some(StoredResponse {
            response: serde_json::from_str(&response).map_err(corrupt)?,
            context: serde_json::from_str(&context).map_err(corrupt)?,
        }))
    }

    /// Removes response `id`; false if there was none.
    pub fn delete(&self, id: &str) -> Result<bool, StoreError> {
        let n = self
            .lock()
            .execute("DELETE FROM responses WHERE id = ?1", params![id])?;
        Ok(n > 0)
    }

    /// A panic while holding the lock cannot leave SQLite half-written (each call is one
    /// statement), so a poisoned lock is still usable.
    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> (Value, Vec<Value>) {
        (
            json!({"id": "resp_1", "object": "response", "output": [{"type": "message"}]}),
            vec![json!({"type": "message", "role": "user", "content": "hi"})],
        )
    }

    #[test]
    fn put_get_delete() {
        let store = ResponseStore::in_memory().unwrap();
        assert_eq!(store.get("resp_1").unwrap(), None);
        let (response, context) = sample();
        store.put("resp_1", &response, &context).unwrap();
        let got = store.get("resp_1").unwrap().unwrap();
        assert_eq!((got.response, got.context), (response.clone(), context));
        // Upsert: the second put wins.
        store.put("resp_1", &response, &[]).unwrap();
        assert!(store.get("resp_1").unwrap().unwrap().context.is_empty());
        assert!(store.delete("resp_1").unwrap());
        assert!(!store.delete("resp_1").unwrap());
        assert_eq!(store.get("resp_1").unwrap(), None);
    }

    #[test]
    fn a_stored_response_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state").join("responses.sqlite");
        let (response, context) = sample();
        {
            let store = ResponseStore::open(&path).unwrap();
            store.put("resp_1", &response, &context).unwrap();
        }
        let store = ResponseStore::open(&path).unwrap();
        let got = store.get("resp_1").unwrap().unwrap();
        assert_eq!((got.response, got.context), (response, context));
    }

    #[test]
    fn a_file_that_is_not_a_database_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("responses.sqlite");
        std::fs::write(&path, vec![b'x'; 4096]).unwrap();
        let e = ResponseStore::open(&path).err().expect("must fail");
        let message = e.to_string();
        assert!(matches!(e, StoreError::Open { .. }), "{message}");
        assert!(message.contains(&path.display().to_string()), "{message}");

        let e = ResponseStore::open(dir.path())
            .err()
            .expect("a folder must fail");
        assert!(
            e.to_string().contains(&dir.path().display().to_string()),
            "{e}"
        );
    }
}
