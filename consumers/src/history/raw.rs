//! [`RawStatement`]: a statement of the SQLite store's bulk writes, bound and run through
//! SQLite's C API.
//!
//! rusqlite checks each binding through the connection (a `RefCell` borrow and a result
//! decoded per parameter) and copies every text: on the 1000-instrument stream that was
//! 3,200 instructions to bind one order row's 20 parameters, 11% of the history
//! consumer's instructions (callgrind). Here a binding is one call into SQLite, and texts
//! that live for the program are bound without a copy. A statement is prepared once and
//! kept across commits: its owner drops it before the connection ([`RawStatement::prepare`]).

use rusqlite::{ffi, Connection};
use std::ffi::{c_int, CStr};
use std::ptr;

/// A prepared statement that is bound, run (to `SQLITE_DONE`) and reset, row after row.
pub(crate) struct RawStatement {
    stmt: *mut ffi::sqlite3_stmt,
    db: *mut ffi::sqlite3,
}

// SAFETY: SQLite runs in multi-thread mode (rusqlite opens connections with
// `SQLITE_OPEN_NO_MUTEX`): a connection and its statements may move to another thread as
// long as one thread uses them at a time, which `&mut` access ensures. The statement moves
// with the store that owns it and its connection.
unsafe impl Send for RawStatement {}

/// A value bound to a parameter.
pub(crate) trait RawValue {
    fn bind(self, st: &mut RawStatement, k: c_int) -> rusqlite::Result<()>;
}

impl RawValue for i64 {
    #[inline]
    fn bind(self, st: &mut RawStatement, k: c_int) -> rusqlite::Result<()> {
        // SAFETY: `st.stmt` is a live statement of this connection (finalized only on drop).
        st.check(unsafe { ffi::sqlite3_bind_int64(st.stmt, k, self) })
    }
}

impl RawValue for &'static str {
    #[inline]
    fn bind(self, st: &mut RawStatement, k: c_int) -> rusqlite::Result<()> {
        // SAFETY: a live statement; the text lives for the program, so SQLite may keep the
        // pointer without copying it (`SQLITE_STATIC`). Texts here are a few bytes.
        st.check(unsafe {
            ffi::sqlite3_bind_text(
                st.stmt,
                k,
                self.as_ptr().cast(),
                self.len() as c_int,
                ffi::SQLITE_STATIC(),
            )
        })
    }
}

impl RawValue for Option<&str> {
    #[inline]
    fn bind(self, st: &mut RawStatement, k: c_int) -> rusqlite::Result<()> {
        let Some(s) = self else {
            // SAFETY: a live statement.
            return st.check(unsafe { ffi::sqlite3_bind_null(st.stmt, k) });
        };
        let Ok(len) = c_int::try_from(s.len()) else {
            return Err(rusqlite::Error::ToSqlConversionFailure(
                "text longer than 2 GiB".into(),
            ));
        };
        // SAFETY: a live statement; SQLite copies the text (`SQLITE_TRANSIENT`) before the
        // call returns, so the borrow may end.
        st.check(unsafe {
            ffi::sqlite3_bind_text(st.stmt, k, s.as_ptr().cast(), len, ffi::SQLITE_TRANSIENT())
        })
    }
}

impl RawValue for Option<String> {
    #[inline]
    fn bind(self, st: &mut RawStatement, k: c_int) -> rusqlite::Result<()> {
        self.as_deref().bind(st, k)
    }
}

impl RawStatement {
    /// Prepares `sql` (one statement) on `conn`.
    ///
    /// # Safety
    ///
    /// The statement must be dropped before `conn` is closed, and used only on the thread
    /// that uses `conn`.
    pub unsafe fn prepare(conn: &Connection, sql: &str) -> rusqlite::Result<Self> {
        let Ok(len) = c_int::try_from(sql.len()) else {
            return Err(rusqlite::Error::ToSqlConversionFailure(
                "statement longer than 2 GiB".into(),
            ));
        };
        // SAFETY: the handle is the open connection's; the caller keeps the connection open
        // while the statement lives.
        let db = unsafe { conn.handle() };
        let mut stmt = ptr::null_mut();
        // SAFETY: `sql` is valid for `len` bytes; SQLite writes the statement (or null) to
        // `stmt` and keeps no pointer into `sql`.
        let rc = unsafe {
            ffi::sqlite3_prepare_v2(db, sql.as_ptr().cast(), len, &mut stmt, ptr::null_mut())
        };
        let st = RawStatement { stmt, db };
        if rc != ffi::SQLITE_OK || stmt.is_null() {
            return Err(st.error(rc));
        }
        Ok(st)
    }

    /// Binds `v` to parameter `k` (from 1).
    #[inline]
    pub fn bind(&mut self, k: c_int, v: impl RawValue) -> rusqlite::Result<()> {
        v.bind(self, k)
    }

    /// Runs the statement once with its bindings (it must return no rows) and resets it.
    pub fn run(&mut self) -> rusqlite::Result<()> {
        // SAFETY: a live statement of this connection, on this thread.
        let rc = unsafe { ffi::sqlite3_step(self.stmt) };
        let err = (rc != ffi::SQLITE_DONE).then(|| self.error(rc));
        // SAFETY: as above. After a failed step the reset returns the same error, read above.
        unsafe { ffi::sqlite3_reset(self.stmt) };
        match err {
            None => Ok(()),
            Some(e) => Err(e),
        }
    }

    #[inline]
    fn check(&self, rc: c_int) -> rusqlite::Result<()> {
        if rc == ffi::SQLITE_OK {
            Ok(())
        } else {
            Err(self.error(rc))
        }
    }

    /// The connection's error for `rc` (its message when it has one for that code).
    #[cold]
    fn error(&self, rc: c_int) -> rusqlite::Error {
        if rc == ffi::SQLITE_ROW {
            return rusqlite::Error::ExecuteReturnedResults;
        }
        // SAFETY: the connection is open; the message is a C string SQLite owns, copied
        // before any other call on the connection.
        let msg = unsafe {
            let m = ffi::sqlite3_errmsg(self.db);
            (!m.is_null() && ffi::sqlite3_errcode(self.db) == rc)
                .then(|| CStr::from_ptr(m).to_string_lossy().into_owned())
        };
        rusqlite::Error::SqliteFailure(ffi::Error::new(rc), msg)
    }
}

impl Drop for RawStatement {
    fn drop(&mut self) {
        // SAFETY: the statement is this value's alone and finalized once, while its
        // connection is still open (the contract of `prepare`). Finalizing null is a no-op.
        unsafe { ffi::sqlite3_finalize(self.stmt) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_bound_and_run_are_stored_and_errors_are_reported() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, s TEXT NOT NULL, r TEXT)")
            .unwrap();
        {
            // SAFETY: dropped at the end of this block, before `conn`.
            let mut st =
                unsafe { RawStatement::prepare(&conn, "INSERT INTO t VALUES (?1, ?2, ?3)") }
                    .unwrap();
            let owned = String::from("owned text");
            for (id, r) in [
                (1i64, Some(owned.as_str())),
                (-7, None),
                (i64::MAX, Some("")),
            ] {
                st.bind(1, id).unwrap();
                st.bind(2, "static").unwrap();
                st.bind(3, r).unwrap();
                st.run().unwrap();
            }
            // A duplicate key: the constraint's error, and the statement still usable.
            st.bind(1, 1i64).unwrap();
            st.bind(2, "again").unwrap();
            st.bind(3, None::<&str>).unwrap();
            let e = st.run().unwrap_err();
            assert_eq!(
                e.sqlite_error_code(),
                Some(rusqlite::ErrorCode::ConstraintViolation)
            );
            assert!(e.to_string().contains("UNIQUE"), "{e}");
            st.bind(1, 2i64).unwrap();
            st.run().unwrap();
            // A parameter the statement does not have.
            assert_eq!(
                st.bind(4, 0i64).unwrap_err().sqlite_error_code(),
                Some(rusqlite::ErrorCode::ParameterOutOfRange)
            );
            // SAFETY: as above (an error: nothing to drop).
            assert!(
                unsafe { RawStatement::prepare(&conn, "INSERT INTO nowhere VALUES (1)") }.is_err()
            );
        }
        let rows: Vec<(i64, String, Option<String>)> = conn
            .prepare("SELECT id, s, r FROM t ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            rows,
            vec![
                (-7, "static".into(), None),
                (1, "static".into(), Some("owned text".into())),
                // The row run after the error keeps the bindings it was given.
                (2, "again".into(), None),
                (i64::MAX, "static".into(), Some(String::new())),
            ]
        );
    }
}
