//! Dynamic batching: concurrent requests to one model are merged along the first dimension, run
//! once, and the outputs split back, each client getting the rows of its own inputs.
//!
//! A model is batchable when every input and every output has a dynamic first dimension (the
//! batch). Requests merge when their inputs agree on everything but that dimension (names,
//! datatypes, the other dimensions); a request that does not fit the batch being gathered starts
//! the next one. A batch closes at `max_batch` rows or `max_delay` after its first request,
//! whichever comes first, then waits for a free session; up to `runs` batches run at once.
//!
//! Merging is pure ([`merge`], [`split`]); the gatherer is one tokio task per model.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, oneshot};

use super::session::{LoadedModel, RunError};
use super::tensor::{Tensor, TensorData, TensorSpec};

/// How requests to one model are batched.
#[derive(Debug, Clone, Copy)]
pub struct BatchOptions {
    /// Most rows (sum of the requests' first dimensions) in one run.
    pub max_batch: usize,
    /// Longest a request waits for others to join its batch.
    pub max_delay: Duration,
    /// Batches running at once (the model's sessions).
    pub runs: usize,
}

/// True when every input and output of the model has a dynamic first dimension.
pub fn batchable(inputs: &[TensorSpec], outputs: &[TensorSpec]) -> bool {
    let dynamic_first = |s: &TensorSpec| s.shape.first().is_some_and(|&d| d < 0);
    !inputs.is_empty() && inputs.iter().chain(outputs).all(dynamic_first)
}

/// One request waiting in a batch.
struct Job {
    inputs: Vec<Tensor>,
    reply: oneshot::Sender<Result<Vec<Tensor>, RunError>>,
}

impl Job {
    fn rows(&self) -> usize {
        self.inputs.first().and_then(|t| t.shape.first().copied()).unwrap_or(0)
    }
}

/// The queue in front of one batchable model.
#[derive(Debug, Clone)]
pub struct Batcher {
    tx: mpsc::UnboundedSender<Job>,
    merged: Arc<AtomicU64>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job").field("rows", &self.rows()).finish_non_exhaustive()
    }
}

impl Batcher {
    /// Starts the gatherer for `model` on the current tokio runtime.
    pub fn start(model: Arc<LoadedModel>, opts: BatchOptions) -> Batcher {
        let (tx, rx) = mpsc::unbounded_channel();
        let merged = Arc::new(AtomicU64::new(0));
        tokio::spawn(gather(model, opts, rx, Arc::clone(&merged)));
        Batcher { tx, merged }
    }

    /// Requests that ran merged with others so far.
    pub fn merged(&self) -> u64 {
        self.merged.load(Ordering::Relaxed)
    }

    /// Runs `inputs` (checked against the model) in a batch; all outputs, in the model's order.
    pub async fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, RunError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Job { inputs, reply })
            .map_err(|_| RunError::Failed("the batcher has stopped".into()))?;
        answer.await.map_err(|_| RunError::Failed("the batch was dropped".into()))?
    }
}

/// Gathers jobs into batches and runs each on a blocking thread once a session is free.
async fn gather(
    model: Arc<LoadedModel>,
    opts: BatchOptions,
    mut rx: mpsc::UnboundedReceiver<Job>,
    merged: Arc<AtomicU64>,
) {
    let sessions = Arc::new(Semaphore::new(opts.runs.max(1)));
    let mut next: Option<Job> = None;
    loop {
        let first = match next.take() {
            Some(j) => j,
            None => match rx.recv().await {
                Some(j) => j,
                None => return,
            },
        };
        let mut rows = first.rows();
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + opts.max_delay;
        while rows < opts.max_batch {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(j)) if rows + j.rows() <= opts.max_batch && fits(&batch[0], &j) => {
                    rows += j.rows();
                    batch.push(j);
                }
                Ok(Some(j)) => {
                    next = Some(j);
                    break;
                }
                Ok(None) | Err(_) => break,
            }
        }
        if batch.len() > 1 {
            merged.fetch_add(batch.len() as u64, Ordering::Relaxed);
        }
        let Ok(permit) = Arc::clone(&sessions).acquire_owned().await else { return };
        let model = Arc::clone(&model);
        tokio::task::spawn_blocking(move || {
            run_batch(&model, batch);
            drop(permit);
        });
    }
}

/// True when `j`'s inputs can be stacked under `first`'s: same names and datatypes in the same
/// order, same dimensions after the first.
fn fits(first: &Job, j: &Job) -> bool {
    first.inputs.len() == j.inputs.len()
        && first.inputs.iter().zip(&j.inputs).all(|(a, b)| {
            a.name == b.name
                && a.data.datatype() == b.data.datatype()
                && a.shape.get(1..) == b.shape.get(1..)
        })
}

/// Runs the batch merged (or alone when it is one job) and answers each job.
fn run_batch(model: &LoadedModel, batch: Vec<Job>) {
    if batch.len() == 1 {
        for j in batch {
            let _ = j.reply.send(model.run(j.inputs, None));
        }
        return;
    }
    let rows: Vec<usize> = batch.iter().map(Job::rows).collect();
    let (inputs, replies): (Vec<Vec<Tensor>>, Vec<_>) =
        batch.into_iter().map(|j| (j.inputs, j.reply)).unzip();
    let result = model.run(merge(inputs), None).and_then(|outs| split(outs, &rows));
    match result {
        Ok(parts) => {
            for (reply, part) in replies.into_iter().zip(parts) {
                let _ = reply.send(Ok(part));
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(clone_err(&e)));
            }
        }
    }
}

fn clone_err(e: &RunError) -> RunError {
    match e {
        RunError::InvalidInput(m) => RunError::InvalidInput(m.clone()),
        RunError::Failed(m) => RunError::Failed(m.clone()),
    }
}

/// Stacks the jobs' inputs along the first dimension, input by input.
pub fn merge(jobs: Vec<Vec<Tensor>>) -> Vec<Tensor> {
    let mut jobs = jobs.into_iter();
    let Some(mut merged) = jobs.next() else { return Vec::new() };
    for inputs in jobs {
        for (m, t) in merged.iter_mut().zip(inputs) {
            if let Some(d) = m.shape.first_mut() {
                *d += t.shape.first().copied().unwrap_or(0);
            }
            append(&mut m.data, t.data);
        }
    }
    merged
}

fn append(to: &mut TensorData, from: TensorData) {
    macro_rules! cat {
        ($($v:ident),*) => {
            match (to, from) {
                $((TensorData::$v(a), TensorData::$v(b)) => a.extend(b),)*
                // `fits` admitted only equal datatypes.
                _ => {}
            }
        };
    }
    cat!(
        Bool, Uint8, Uint16, Uint32, Uint64, Int8, Int16, Int32, Int64, Fp16, Bf16, Fp32, Fp64,
        Bytes
    );
}

/// Splits each output along its first dimension into `rows[i]` rows for job `i`. An output whose
/// first dimension is not the sum of the rows cannot be split: an error for every job.
pub fn split(outputs: Vec<Tensor>, rows: &[usize]) -> Result<Vec<Vec<Tensor>>, RunError> {
    let total: usize = rows.iter().sum();
    let mut parts: Vec<Vec<Tensor>> =
        rows.iter().map(|_| Vec::with_capacity(outputs.len())).collect();
    for out in outputs {
        if out.shape.first() != Some(&total) {
            return Err(RunError::Failed(format!(
                "output '{}' has shape {:?}, which does not split into batch rows {rows:?}",
                out.name, out.shape
            )));
        }
        let per_row = out.data.len().checked_div(total).unwrap_or(0);
        let mut data = out.data;
        // Cut from the back so that each piece is a cheap tail split.
        for (i, &r) in rows.iter().enumerate().rev() {
            let keep = data.len() - r * per_row;
            let tail = split_off(&mut data, keep);
            let mut shape = out.shape.clone();
            shape[0] = r;
            parts[i].push(Tensor { name: out.name.clone(), shape, data: tail });
        }
    }
    Ok(parts)
}

fn split_off(data: &mut TensorData, at: usize) -> TensorData {
    macro_rules! cut {
        ($($v:ident),*) => {
            match data {
                $(TensorData::$v(a) => TensorData::$v(a.split_off(at)),)*
            }
        };
    }
    cut!(
        Bool, Uint8, Uint16, Uint32, Uint64, Int8, Int16, Int32, Int64, Fp16, Bf16, Fp32, Fp64,
        Bytes
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn t(name: &str, shape: Vec<usize>, v: Vec<f32>) -> Tensor {
        Tensor { name: name.into(), shape, data: TensorData::Fp32(v) }
    }

    #[test]
    fn merge_then_split_gives_each_job_its_rows() {
        let a = vec![t("x", vec![1, 2], vec![1.0, 2.0])];
        let b = vec![t("x", vec![2, 2], vec![3.0, 4.0, 5.0, 6.0])];
        let merged = merge(vec![a.clone(), b.clone()]);
        assert_eq!(merged, vec![t("x", vec![3, 2], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0])]);
        let parts = split(merged, &[1, 2]).unwrap();
        assert_eq!(parts, vec![a, b]);
    }

    #[test]
    fn outputs_without_the_batch_rows_are_an_error() {
        let out = vec![t("y", vec![2], vec![1.0, 2.0])];
        assert!(split(out, &[1, 2]).is_err());
    }

    #[test]
    fn only_models_with_a_dynamic_first_dimension_batch() {
        let s = |shape: &[i64]| TensorSpec {
            name: "a".into(),
            datatype: "FP32".into(),
            shape: shape.to_vec(),
        };
        assert!(batchable(&[s(&[-1, 7])], &[s(&[-1, 7, 384])]));
        assert!(!batchable(&[s(&[2, -1, 128])], &[s(&[-1, 1])]));
        assert!(!batchable(&[s(&[-1, 7]), s(&[])], &[s(&[-1])]));
    }
}
