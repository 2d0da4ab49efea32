//! What `#[derive(Tracked)]` names when it could not derive a struct: a table for the impls it
//! emits beside its errors, so that the struct still implements `Entity`, `Persist` and `Load`
//! and the derive's error is the only one (call sites such as `load::<T>` stay quiet). The
//! impls are never run: a crate with a failed derive does not compile.

diesel::table! {
    /// The table of a struct whose derive failed.
    uow_derive_failed (id) {
        /// Its only column.
        id -> Integer,
    }
}

/// The table of a struct whose derive failed (see the module docs).
///
/// The derive also looks this name up through `__private` (as `FallbackTable`) to tell whether
/// `#[tracked(crate = ..)]` leads to `uow` (`uow-derive/src/expand/names.rs`): if `__private`
/// stopped exporting it, every derive would report a wrong crate path.
pub type Table = uow_derive_failed::table;

/// What a fallback impl returns where it must return an error.
pub const MESSAGE: &str = "#[derive(Tracked)] failed on this struct; see the compiler's error";
