//! The binary encoding of a [`Txn`], the body of a [`crate::Command::Txn`] (kind 7).
//!
//! # Format
//!
//! ```text
//! u32 compare_count                   at most TXN_OPS_MAX
//! compare_count times:
//!     u32 key_len, key bytes
//!     u8  target                      1 = value, 2 = version, 3 = create index, 4 = modify index, 5 = exists
//!     operand                         value: u32 len + bytes; version, create/modify index: u64; exists: u8 0 | 1
//!     u8  op                          1 = eq, 2 = ne, 3 = lt, 4 = gt
//! u32 success_count, then that many ops   at most TXN_OPS_MAX
//! u32 failure_count, then that many ops   at most TXN_OPS_MAX
//! op:
//!     u8  kind                        1 = put, 2 = delete, 3 = delete prefix, 4 = get, 5 = list
//!     put: key, value; delete, get: key; delete prefix: prefix; list: prefix, u64 limit
//!     (keys, values and prefixes: u32 len + bytes)
//! ```
//!
//! Decoding is total and bounded: it checks each count against [`TXN_OPS_MAX`] before reading the items, and
//! every length against the input left. It checks the structure only: whether the transaction is well formed
//! ([`Txn::validate`]) is decided at apply, so that the refusal can name the op.

use super::{Compare, CompareOp, CompareTarget, TXN_OPS_MAX, Txn, TxnOp};
use crate::DecodeError;
use crate::codec::{Reader, Sink};

/// Target tag of [`CompareTarget::Value`].
const TARGET_VALUE: u8 = 1;
/// Target tag of [`CompareTarget::Version`].
const TARGET_VERSION: u8 = 2;
/// Target tag of [`CompareTarget::CreateIndex`].
const TARGET_CREATE_INDEX: u8 = 3;
/// Target tag of [`CompareTarget::ModifyIndex`].
const TARGET_MODIFY_INDEX: u8 = 4;
/// Target tag of [`CompareTarget::Exists`].
const TARGET_EXISTS: u8 = 5;

/// Op tag of [`TxnOp::Put`].
const OP_PUT: u8 = 1;
/// Op tag of [`TxnOp::Delete`].
const OP_DELETE: u8 = 2;
/// Op tag of [`TxnOp::DeletePrefix`].
const OP_DELETE_PREFIX: u8 = 3;
/// Op tag of [`TxnOp::Get`].
const OP_GET: u8 = 4;
/// Op tag of [`TxnOp::List`].
const OP_LIST: u8 = 5;

impl Txn {
    /// Appends the encoding described in the module docs.
    ///
    /// # Panics
    ///
    /// If a list holds more than [`TXN_OPS_MAX`] entries (the server refuses such a transaction long before),
    /// or a key, value or prefix is longer than `u32::MAX` bytes.
    pub(crate) fn write(&self, out: &mut impl Sink) {
        write_count(out, self.compare.len());
        for compare in &self.compare {
            write_compare(out, compare);
        }
        for ops in [&self.success, &self.failure] {
            write_count(out, ops.len());
            for op in ops {
                write_op(out, op);
            }
        }
    }

    /// Reads a transaction written by [`Txn::write`].
    ///
    /// # Errors
    ///
    /// A count over [`TXN_OPS_MAX`], a bad tag, a truncated field. Never panics, whatever the input.
    pub(crate) fn read(reader: &mut Reader<'_>) -> Result<Txn, DecodeError> {
        let compare_count = read_count(reader, "txn compares")?;
        let compare = (0..compare_count).map(|_| read_compare(reader)).collect::<Result<_, _>>()?;
        let success_count = read_count(reader, "txn success ops")?;
        let success = (0..success_count).map(|_| read_op(reader)).collect::<Result<_, _>>()?;
        let failure_count = read_count(reader, "txn failure ops")?;
        let failure = (0..failure_count).map(|_| read_op(reader)).collect::<Result<_, _>>()?;
        Ok(Txn { compare, success, failure })
    }

    /// The exact size of [`Txn::write`]'s output.
    pub(crate) fn encoded_len(&self) -> usize {
        let compares: usize = self.compare.iter().map(compare_len).sum();
        let ops: usize = self.success.iter().chain(&self.failure).map(op_len).sum();
        3 * 4 + compares + ops
    }
}

/// Writes a list length, capped at [`TXN_OPS_MAX`] so that what is written also reads back.
fn write_count(out: &mut impl Sink, count: usize) {
    assert!(count <= TXN_OPS_MAX, "a txn list of {count} entries is over the cap of {TXN_OPS_MAX}");
    let count = u32::try_from(count).unwrap_or(u32::MAX);
    out.put(&count.to_le_bytes());
}

/// Reads a list length and refuses one over [`TXN_OPS_MAX`], before any item is read.
fn read_count(reader: &mut Reader<'_>, what: &'static str) -> Result<usize, DecodeError> {
    let offset = reader.offset();
    let count = reader.u32()?;
    match usize::try_from(count) {
        Ok(count) if count <= TXN_OPS_MAX => Ok(count),
        _ => Err(DecodeError::TooMany { what, count: u64::from(count), max: TXN_OPS_MAX, offset }),
    }
}

/// Writes one compare: key, target tag and operand, op tag.
fn write_compare(out: &mut impl Sink, compare: &Compare) {
    out.put_bytes(&compare.key);
    match &compare.target {
        CompareTarget::Value(value) => {
            out.put_u8(TARGET_VALUE);
            out.put_bytes(value);
        }
        CompareTarget::Version(number) => {
            out.put_u8(TARGET_VERSION);
            out.put_u64(*number);
        }
        CompareTarget::CreateIndex(number) => {
            out.put_u8(TARGET_CREATE_INDEX);
            out.put_u64(*number);
        }
        CompareTarget::ModifyIndex(number) => {
            out.put_u8(TARGET_MODIFY_INDEX);
            out.put_u64(*number);
        }
        CompareTarget::Exists(exists) => {
            out.put_u8(TARGET_EXISTS);
            out.put_u8(u8::from(*exists));
        }
    }
    out.put_u8(match compare.op {
        CompareOp::Eq => 1,
        CompareOp::Ne => 2,
        CompareOp::Lt => 3,
        CompareOp::Gt => 4,
    });
}

/// Reads one compare written by `write_compare`.
fn read_compare(reader: &mut Reader<'_>) -> Result<Compare, DecodeError> {
    let key = reader.bytes()?.to_vec();
    let target_offset = reader.offset();
    let target = match reader.u8()? {
        TARGET_VALUE => CompareTarget::Value(reader.bytes()?.to_vec()),
        TARGET_VERSION => CompareTarget::Version(reader.u64()?),
        TARGET_CREATE_INDEX => CompareTarget::CreateIndex(reader.u64()?),
        TARGET_MODIFY_INDEX => CompareTarget::ModifyIndex(reader.u64()?),
        TARGET_EXISTS => {
            let offset = reader.offset();
            match reader.u8()? {
                0 => CompareTarget::Exists(false),
                1 => CompareTarget::Exists(true),
                tag => return Err(DecodeError::BadTag { what: "txn exists flag", tag, offset }),
            }
        }
        tag => return Err(DecodeError::BadTag { what: "txn compare target", tag, offset: target_offset }),
    };
    let op_offset = reader.offset();
    let op = match reader.u8()? {
        1 => CompareOp::Eq,
        2 => CompareOp::Ne,
        3 => CompareOp::Lt,
        4 => CompareOp::Gt,
        tag => return Err(DecodeError::BadTag { what: "txn compare op", tag, offset: op_offset }),
    };
    Ok(Compare { key, target, op })
}

/// The exact size of `write_compare`'s output.
fn compare_len(compare: &Compare) -> usize {
    let operand = match &compare.target {
        CompareTarget::Value(value) => 4 + value.len(),
        CompareTarget::Version(_) | CompareTarget::CreateIndex(_) | CompareTarget::ModifyIndex(_) => 8,
        CompareTarget::Exists(_) => 1,
    };
    4 + compare.key.len() + 1 + operand + 1
}

/// Writes one op: its kind tag, then its fields.
fn write_op(out: &mut impl Sink, op: &TxnOp) {
    match op {
        TxnOp::Put { key, value } => {
            out.put_u8(OP_PUT);
            out.put_bytes(key);
            out.put_bytes(value);
        }
        TxnOp::Delete { key } => {
            out.put_u8(OP_DELETE);
            out.put_bytes(key);
        }
        TxnOp::DeletePrefix { prefix } => {
            out.put_u8(OP_DELETE_PREFIX);
            out.put_bytes(prefix);
        }
        TxnOp::Get { key } => {
            out.put_u8(OP_GET);
            out.put_bytes(key);
        }
        TxnOp::List { prefix, limit } => {
            out.put_u8(OP_LIST);
            out.put_bytes(prefix);
            out.put_u64(*limit);
        }
    }
}

/// Reads one op written by `write_op`.
fn read_op(reader: &mut Reader<'_>) -> Result<TxnOp, DecodeError> {
    let offset = reader.offset();
    let op = match reader.u8()? {
        OP_PUT => TxnOp::Put { key: reader.bytes()?.to_vec(), value: reader.bytes()?.to_vec() },
        OP_DELETE => TxnOp::Delete { key: reader.bytes()?.to_vec() },
        OP_DELETE_PREFIX => TxnOp::DeletePrefix { prefix: reader.bytes()?.to_vec() },
        OP_GET => TxnOp::Get { key: reader.bytes()?.to_vec() },
        OP_LIST => TxnOp::List { prefix: reader.bytes()?.to_vec(), limit: reader.u64()? },
        tag => return Err(DecodeError::BadTag { what: "txn op", tag, offset }),
    };
    Ok(op)
}

/// The exact size of `write_op`'s output.
fn op_len(op: &TxnOp) -> usize {
    1 + match op {
        TxnOp::Put { key, value } => 4 + key.len() + 4 + value.len(),
        TxnOp::Delete { key } | TxnOp::Get { key } => 4 + key.len(),
        TxnOp::DeletePrefix { prefix } => 4 + prefix.len(),
        TxnOp::List { prefix, .. } => 4 + prefix.len() + 8,
    }
}
