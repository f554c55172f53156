//! Documents read on a thread of their own, in batches, one batch ahead of tokenisation.
//!
//! Reading and parsing (JSON, Parquet decoding, UTF-8 checks) take about a tenth of the time of
//! the fast encoder; done in line they would leave a core idle each time. The channel holds one
//! batch, so at most three are in memory: one being read, one waiting, one being tokenised.

use crate::error::DataError;
use crate::inputs::{read_file, source_of_file, Doc, Skipped};
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::{Scope, ScopedJoinHandle};

pub enum FromReader {
    Docs(Vec<Doc>),
    /// What a file left out, reported once the file is read.
    Skipped {
        source: String,
        skipped: Skipped,
    },
}

/// Limits of one batch: whichever comes first.
#[derive(Clone, Copy)]
pub struct BatchLimits {
    pub docs: usize,
    pub bytes: usize,
}

/// Starts reading `files` on a thread of `scope`. The thread ends when every file is read, when
/// one fails (its result is that error), or when the receiver is dropped.
pub fn read_ahead<'scope>(
    scope: &'scope Scope<'scope, '_>,
    files: &'scope [PathBuf],
    text_field: &'scope str,
    limits: BatchLimits,
) -> (
    Receiver<FromReader>,
    ScopedJoinHandle<'scope, Result<(), DataError>>,
) {
    let (send, receive) = sync_channel(1);
    let reader = scope.spawn(move || read_all(files, text_field, limits, &send));
    (receive, reader)
}

fn read_all(
    files: &[PathBuf],
    text_field: &str,
    limits: BatchLimits,
    send: &SyncSender<FromReader>,
) -> Result<(), DataError> {
    // The receiver only goes away when the consumer has failed; its error is the one reported.
    let consumer_gone = || DataError::Invalid("reading stopped: the consumer has gone".into());
    let mut batch = Vec::new();
    let mut batch_bytes = 0;
    for f in files {
        let skipped = read_file(f, text_field, &mut |doc| {
            batch_bytes += doc.text.len();
            batch.push(doc);
            if batch.len() >= limits.docs || batch_bytes >= limits.bytes {
                batch_bytes = 0;
                send.send(FromReader::Docs(std::mem::take(&mut batch)))
                    .map_err(|_| consumer_gone())?;
            }
            Ok(())
        })?;
        if skipped != Skipped::default() {
            let source = source_of_file(f);
            send.send(FromReader::Skipped { source, skipped })
                .map_err(|_| consumer_gone())?;
        }
    }
    if !batch.is_empty() {
        send.send(FromReader::Docs(batch))
            .map_err(|_| consumer_gone())?;
    }
    Ok(())
}
