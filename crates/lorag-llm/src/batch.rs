//! Batched generation for serving: one llama.cpp context, `n_slots` sequences, and one
//! `llama_decode` per step for every active sequence (as llama-server's slots do).
//!
//! A [`BatchEngine`] owns a decode thread. Requests arrive through a channel; each waits in a
//! bounded queue until a slot is free, runs there, and streams [`Event`]s back. Each slot keeps the
//! tokens whose KV entries it holds, so a new request reuses the longest common prefix of the
//! free slot that shares most with it (a follow-up question re-evaluates only the new turn).
//!
//! Invariants:
//! - Only the decode thread touches the context; a request's only handles are its event
//!   receiver and its cancel flag.
//! - All sequences in a context share one set of LoRA adapters: a request whose adapters differ
//!   from the running set waits until the running sequences finish; the switch drops every
//!   slot's cache (its KV entries were computed under the old set).
//! - A request that is cancelled, or whose receiver is gone (client disconnected), finishes at the
//!   next step with `FinishReason::Cancelled` and frees its slot.
//! - A failed `llama_decode` fails the requests in that batch, never the thread.

use crate::context::{LoraAdapter, RawContext};
use crate::generate::TextStream;
use crate::{Engine, Error, FinishReason, Generation, Generator, Message, Result, SamplingParams};
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::data::LlamaTokenData;
use llama_cpp_2::token::data_array::LlamaTokenDataArray;
use llama_cpp_2::token::LlamaToken;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The adapters a request runs with: (adapter, scale).
pub type AdapterSet = Vec<(Arc<LoraAdapter>, f32)>;

#[derive(Debug, Clone)]
pub struct BatchOptions {
    /// Sequences decoded together (slots).
    pub n_slots: usize,
    /// Context tokens per slot; 0: the model's training context, capped at 4096.
    pub n_ctx_per_slot: u32,
    /// Tokens per `llama_decode` (prompt chunks of all slots together, plus one per decoding slot).
    pub n_batch: u32,
    pub n_threads: i32,
    /// Requests that may wait for a slot; past this, `submit` refuses with [`Error::QueueFull`].
    pub max_queue: usize,
    /// A chat template name or source overriding the model's own.
    pub chat_template: Option<String>,
}

impl Default for BatchOptions {
    fn default() -> Self {
        Self {
            n_slots: 4,
            n_ctx_per_slot: 0,
            n_batch: 512,
            n_threads: crate::default_threads(),
            max_queue: 64,
            chat_template: None,
        }
    }
}

/// What a request streams back.
#[derive(Debug)]
pub enum Event {
    /// Generation started (the request has a slot; prompt evaluation begins).
    Started,
    /// Text, whole UTF-8 characters, never part of a stop string.
    Text(String),
    /// The end, with the whole text and the timings.
    Done(Result<Generation>),
}

/// A generation request.
pub struct Request {
    pub prompt: Vec<i32>,
    pub params: SamplingParams,
    pub adapters: AdapterSet,
    /// Set to stop the request at the next step.
    pub cancel: Arc<AtomicBool>,
}

struct Job {
    req: Request,
    events: Sender<Event>,
    queued_at: Instant,
}

/// Counters for metrics.
#[derive(Debug, Default)]
pub struct BatchStats {
    pub queued: AtomicUsize,
    pub busy_slots: AtomicUsize,
    pub decode_calls: AtomicUsize,
    pub prompt_tokens: AtomicUsize,
    pub completion_tokens: AtomicUsize,
    /// Requests stopped by their caller (cancel flag, or the receiver went away).
    pub cancelled: AtomicUsize,
}

/// A shared, batched generator. Cheap to clone handles come from [`BatchEngine::client`].
pub struct BatchEngine {
    inner: Arc<Inner>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

struct Inner {
    tx: Mutex<Option<SyncSender<Job>>>,
    model: Arc<LlamaModel>,
    template: Option<String>,
    model_path: String,
    n_ctx_slot: usize,
    n_slots: usize,
    stats: Arc<BatchStats>,
    controls: Vec<String>,
}

impl BatchEngine {
    pub fn start(engine: &Engine, opts: &BatchOptions) -> Result<Self> {
        if opts.n_slots == 0 {
            return Err(Error::Param("at least one slot is needed".into()));
        }
        let n_ctx_slot = if opts.n_ctx_per_slot == 0 {
            engine.n_ctx_train().clamp(1, 4096)
        } else {
            opts.n_ctx_per_slot
        };
        let n_slots = opts.n_slots;
        let n_batch = opts.n_batch.max(n_slots as u32).max(1);
        let ctx = RawContext::with_sequences(
            &engine.model,
            n_ctx_slot * n_slots as u32,
            n_batch,
            opts.n_threads,
            n_slots as u32,
        )?;
        let n_ctx_slot = ctx.n_ctx as usize / n_slots;
        let template = opts
            .chat_template
            .clone()
            .or_else(|| engine.chat_template());
        let stats = Arc::new(BatchStats::default());
        let (tx, rx) = mpsc::sync_channel::<Job>(opts.max_queue.max(1));
        let model = engine.model.clone();
        let st = stats.clone();
        let thread = std::thread::Builder::new()
            .name("lorag-decode".into())
            .spawn(move || Scheduler::new(ctx, model, n_slots, n_ctx_slot, st).run(rx))
            .map_err(|e| Error::Context(format!("cannot start the decode thread: {e}")))?;
        let probe = Session::control_texts(&engine.model);
        Ok(Self {
            inner: Arc::new(Inner {
                tx: Mutex::new(Some(tx)),
                model: engine.model.clone(),
                template,
                model_path: engine.path().display().to_string(),
                n_ctx_slot,
                n_slots,
                stats,
                controls: probe,
            }),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Queue a request. Refused with [`Error::QueueFull`] when the queue is full, and with
    /// [`Error::ContextOverflow`] when the prompt does not fit a slot.
    pub fn submit(&self, req: Request) -> Result<Receiver<Event>> {
        self.inner.submit(req)
    }

    pub fn client(&self) -> BatchClient {
        BatchClient {
            inner: self.inner.clone(),
            adapters: Vec::new(),
            cancel: Arc::new(AtomicBool::new(false)),
        }
    }

    pub fn stats(&self) -> &BatchStats {
        &self.inner.stats
    }
    pub fn n_slots(&self) -> usize {
        self.inner.n_slots
    }
    pub fn n_ctx_per_slot(&self) -> usize {
        self.inner.n_ctx_slot
    }

    /// Stop taking requests, let the queued and running ones finish, and join the thread.
    pub fn shutdown(&self) {
        self.inner.tx.lock().expect("not poisoned").take();
        if let Some(t) = self.thread.lock().expect("not poisoned").take() {
            let _ = t.join();
        }
    }
}

impl Drop for BatchEngine {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Inner {
    fn submit(&self, req: Request) -> Result<Receiver<Event>> {
        req.params.validate()?;
        if req.prompt.is_empty() {
            return Err(Error::Param("the prompt is empty".into()));
        }
        if req.prompt.len() + 1 > self.n_ctx_slot {
            return Err(Error::ContextOverflow {
                prompt: req.prompt.len(),
                n_ctx: self.n_ctx_slot,
            });
        }
        let (etx, erx) = mpsc::channel();
        let guard = self.tx.lock().expect("not poisoned");
        let Some(tx) = guard.as_ref() else {
            return Err(Error::ShuttingDown);
        };
        self.stats.queued.fetch_add(1, Ordering::SeqCst);
        match tx.try_send(Job {
            req,
            events: etx,
            queued_at: Instant::now(),
        }) {
            Ok(()) => Ok(erx),
            Err(TrySendError::Full(_)) => {
                self.stats.queued.fetch_sub(1, Ordering::SeqCst);
                Err(Error::QueueFull)
            }
            Err(TrySendError::Disconnected(_)) => {
                self.stats.queued.fetch_sub(1, Ordering::SeqCst);
                Err(Error::ShuttingDown)
            }
        }
    }

    fn tokenize(&self, text: &str, special: bool) -> Vec<i32> {
        self.model
            .vocab()
            .tokenize(text.as_bytes(), special, special)
            .into_iter()
            .map(|t| t.0)
            .collect()
    }
}

/// A handle on a [`BatchEngine`] that implements [`Generator`] (blocking: it waits for its
/// request's events). Set its adapters and cancel flag per request.
#[derive(Clone)]
pub struct BatchClient {
    inner: Arc<Inner>,
    adapters: AdapterSet,
    cancel: Arc<AtomicBool>,
}

impl BatchClient {
    pub fn set_adapters(&mut self, adapters: AdapterSet) {
        self.adapters = adapters;
    }
    /// The flag that cancels this client's running request (shared with the caller).
    pub fn set_cancel(&mut self, cancel: Arc<AtomicBool>) {
        self.cancel = cancel;
    }
    pub fn tokenize(&self, text: &str) -> Vec<i32> {
        self.inner.tokenize(text, true)
    }
}

impl Generator for BatchClient {
    fn render(&self, messages: &[Message]) -> Result<String> {
        let Some(t) = &self.inner.template else {
            return Err(Error::NoChatTemplate {
                model: self.inner.model_path.clone(),
            });
        };
        crate::chat::render_source(&self.inner.model, t, messages, true)
    }
    fn control_token_texts(&self) -> Vec<String> {
        self.inner.controls.clone()
    }
    fn count_tokens(&self, text: &str) -> usize {
        self.inner.tokenize(text, false).len()
    }
    fn context_size(&self) -> usize {
        self.inner.n_ctx_slot
    }
    fn stream(
        &mut self,
        prompt: &str,
        params: &SamplingParams,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Generation> {
        let rx = self.inner.submit(Request {
            prompt: self.inner.tokenize(prompt, true),
            params: params.clone(),
            adapters: self.adapters.clone(),
            cancel: self.cancel.clone(),
        })?;
        // A stop asked by `on_text` ends this generation only; a flag set by the owner of the
        // cancel handle stays set (it cancels everything the request still does).
        let mut stopped_here = false;
        for ev in rx.iter() {
            match ev {
                Event::Started => {}
                Event::Text(t) => {
                    if !stopped_here && !on_text(&t) {
                        stopped_here = !self.cancel.swap(true, Ordering::SeqCst);
                    }
                }
                Event::Done(r) => {
                    if stopped_here {
                        self.cancel.store(false, Ordering::SeqCst);
                    }
                    return r;
                }
            }
        }
        Err(Error::Context("the decode thread stopped".into()))
    }
}

use crate::generate::Session;

struct Active {
    events: Sender<Event>,
    cancel: Arc<AtomicBool>,
    params: SamplingParams,
    sampler: LlamaSampler,
    stream: TextStream,
    /// Prompt tokens not evaluated yet.
    pending: Vec<i32>,
    prompt_len: usize,
    cached: usize,
    /// The token sampled last, to feed at the next step.
    next: Option<i32>,
    completion: usize,
    t0: Instant,
    t_first: Option<Instant>,
    /// Row of this slot's logits in the last batch.
    row: Option<usize>,
    queued_ms: f64,
}

struct Slot {
    seq: i32,
    /// Tokens whose KV entries this sequence holds (positions 0..).
    cached: Vec<i32>,
    active: Option<Active>,
}

struct Scheduler {
    ctx: RawContext,
    model: Arc<LlamaModel>,
    slots: Vec<Slot>,
    n_ctx_slot: usize,
    adapters: AdapterSet,
    waiting: VecDeque<Job>,
    stats: Arc<BatchStats>,
    candidates: LlamaTokenDataArray,
    open: bool,
}

fn same_adapters(a: &AdapterSet, b: &AdapterSet) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|((x, s), (y, t))| Arc::ptr_eq(x, y) && s == t)
}

impl Scheduler {
    fn new(
        ctx: RawContext,
        model: Arc<LlamaModel>,
        n_slots: usize,
        n_ctx_slot: usize,
        stats: Arc<BatchStats>,
    ) -> Self {
        Self {
            ctx,
            model,
            slots: (0..n_slots)
                .map(|i| Slot {
                    seq: i as i32,
                    cached: Vec::new(),
                    active: None,
                })
                .collect(),
            n_ctx_slot,
            adapters: Vec::new(),
            waiting: VecDeque::new(),
            stats,
            candidates: LlamaTokenDataArray::new(Vec::new(), false),
            open: true,
        }
    }

    fn busy(&self) -> usize {
        self.slots.iter().filter(|s| s.active.is_some()).count()
    }

    fn run(mut self, rx: Receiver<Job>) {
        loop {
            // Take new jobs: block only when there is nothing to do.
            if self.busy() == 0 && self.waiting.is_empty() {
                if !self.open {
                    return;
                }
                match rx.recv() {
                    Ok(j) => self.waiting.push_back(j),
                    Err(_) => return,
                }
            }
            while self.open {
                match rx.try_recv() {
                    Ok(j) => self.waiting.push_back(j),
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => self.open = false,
                }
            }
            self.drop_cancelled_waiting();
            self.admit();
            self.stats.busy_slots.store(self.busy(), Ordering::SeqCst);
            if self.busy() == 0 {
                continue;
            }
            self.step();
            self.stats.busy_slots.store(self.busy(), Ordering::SeqCst);
        }
    }

    fn drop_cancelled_waiting(&mut self) {
        let stats = &self.stats;
        self.waiting.retain(|j| {
            let keep = !j.req.cancel.load(Ordering::SeqCst);
            if !keep {
                stats.queued.fetch_sub(1, Ordering::SeqCst);
                let _ = j.events.send(Event::Done(Err(Error::Cancelled)));
            }
            keep
        });
    }

    /// Put waiting jobs into free slots (first come, first served, among jobs that can run with
    /// the current adapters; the adapters switch when every slot is idle).
    fn admit(&mut self) {
        loop {
            if self.waiting.is_empty() || self.slots.iter().all(|s| s.active.is_some()) {
                return;
            }
            let pos = self
                .waiting
                .iter()
                .position(|j| same_adapters(&j.req.adapters, &self.adapters));
            let idx = match pos {
                Some(i) => i,
                None if self.busy() == 0 => {
                    let want = self.waiting[0].req.adapters.clone();
                    let refs: Vec<(&LoraAdapter, f32)> =
                        want.iter().map(|(a, s)| (&**a, *s)).collect();
                    if let Err(e) = self.ctx.set_adapters(&refs) {
                        let j = self.waiting.pop_front().expect("not empty");
                        self.stats.queued.fetch_sub(1, Ordering::SeqCst);
                        let _ = j.events.send(Event::Done(Err(e)));
                        continue;
                    }
                    self.ctx.clear();
                    for s in &mut self.slots {
                        s.cached.clear();
                    }
                    self.adapters = want;
                    0
                }
                None => return,
            };
            let job = self.waiting.remove(idx).expect("index from position");
            self.stats.queued.fetch_sub(1, Ordering::SeqCst);
            self.start(job);
        }
    }

    fn start(&mut self, job: Job) {
        let tokens = &job.req.prompt;
        // The free slot sharing the longest prefix with the prompt.
        let (si, common) = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.active.is_none())
            .map(|(i, s)| {
                let c = s
                    .cached
                    .iter()
                    .zip(tokens)
                    .take_while(|(a, b)| a == b)
                    .count();
                (i, c)
            })
            .max_by_key(|&(i, c)| (c, std::cmp::Reverse(i)))
            .expect("a free slot exists");
        let reuse = common.min(tokens.len() - 1);
        let seq = self.slots[si].seq;
        let slot_cached = self.slots[si].cached.len();
        let mut reuse = reuse;
        if reuse < slot_cached && !self.ctx.truncate_seq(seq, reuse) {
            self.ctx.truncate_seq(seq, 0);
            reuse = 0;
        }
        self.slots[si].cached.truncate(reuse);
        let params = job.req.params;
        let mut sampler = params.chain(self.model.n_vocab());
        let tail = tokens
            .len()
            .saturating_sub(params.repeat_last_n.max(0) as usize);
        sampler.accept_many(tokens[tail..].iter().map(|&t| LlamaToken(t)));
        let _ = job.events.send(Event::Started);
        self.stats
            .prompt_tokens
            .fetch_add(tokens.len(), Ordering::Relaxed);
        self.slots[si].active = Some(Active {
            events: job.events,
            cancel: job.req.cancel,
            stream: TextStream::new(params.stop.clone()),
            sampler,
            pending: tokens[reuse..].to_vec(),
            prompt_len: tokens.len(),
            cached: reuse,
            params,
            next: None,
            completion: 0,
            t0: Instant::now(),
            t_first: None,
            row: None,
            queued_ms: job.queued_at.elapsed().as_secs_f64() * 1e3,
        });
    }

    /// One `llama_decode` for every active slot: the next token of each decoding slot, then prompt
    /// chunks of the slots still evaluating their prompts, up to the batch capacity.
    fn step(&mut self) {
        let cap = self.ctx.batch_capacity();
        let mut entries: Vec<(i32, usize, i32, bool)> = Vec::with_capacity(cap);
        // Cancelled or disconnected requests end here, before any work.
        for si in 0..self.slots.len() {
            let gone = match &self.slots[si].active {
                Some(a) => a.cancel.load(Ordering::SeqCst),
                None => false,
            };
            if gone {
                self.finish(si, Ok(FinishReason::Cancelled));
            }
        }
        for s in &mut self.slots {
            let Some(a) = s.active.as_mut() else { continue };
            a.row = None;
            if let Some(t) = a.next.take() {
                a.row = Some(entries.len());
                entries.push((t, s.cached.len(), s.seq, true));
                s.cached.push(t);
            }
        }
        for s in &mut self.slots {
            let Some(a) = s.active.as_mut() else { continue };
            if a.pending.is_empty() || entries.len() >= cap {
                continue;
            }
            let room = cap - entries.len();
            let take = a.pending.len().min(room);
            let last = take == a.pending.len();
            for (i, &t) in a.pending[..take].iter().enumerate() {
                let want = last && i + 1 == take;
                if want {
                    a.row = Some(entries.len());
                }
                entries.push((t, s.cached.len(), s.seq, want));
                s.cached.push(t);
            }
            a.pending.drain(..take);
        }
        if entries.is_empty() {
            return;
        }
        self.stats.decode_calls.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = self.ctx.decode_entries(&entries) {
            // Every sequence in this batch is in an unknown state: fail them and forget their KV.
            for si in 0..self.slots.len() {
                if self.slots[si]
                    .active
                    .as_ref()
                    .is_some_and(|a| a.row.is_some())
                {
                    let seq = self.slots[si].seq;
                    self.ctx.truncate_seq(seq, 0);
                    self.slots[si].cached.clear();
                    self.finish(si, Err(Error::Context(e.to_string())));
                }
            }
            return;
        }
        for si in 0..self.slots.len() {
            let Some(row) = self.slots[si].active.as_ref().and_then(|a| a.row) else {
                continue;
            };
            if let Some(reason) = self.sample(si, row) {
                self.finish(si, Ok(reason));
            }
        }
    }

    /// Sample the next token of slot `si` from batch row `row`; Some(reason) when it is done.
    fn sample(&mut self, si: usize, row: usize) -> Option<FinishReason> {
        let n_ctx_slot = self.n_ctx_slot;
        let logits = self.ctx.logits_ith(row as i32);
        let arr = &mut self.candidates;
        arr.data.clear();
        arr.data.extend(
            logits
                .iter()
                .enumerate()
                .map(|(i, &l)| LlamaTokenData::new(LlamaToken(i as i32), l, 0.0)),
        );
        arr.sorted = false;
        arr.selected = None;
        let slot = &mut self.slots[si];
        let a = slot.active.as_mut().expect("active");
        arr.apply_sampler(&mut a.sampler);
        let Some(token) = arr.selected_token() else {
            return Some(FinishReason::Stop);
        };
        a.sampler.accept(token);
        a.t_first.get_or_insert_with(Instant::now);
        let vocab = self.model.vocab();
        if vocab.is_eog(token) {
            return Some(FinishReason::Stop);
        }
        a.completion += 1;
        self.stats.completion_tokens.fetch_add(1, Ordering::Relaxed);
        let piece = vocab.token_to_piece(token, false, None);
        let events = &a.events;
        let mut gone = false;
        let stopped = a.stream.push(&piece, &mut |t| {
            if events.send(Event::Text(t.to_string())).is_err() {
                gone = true;
            }
        });
        if stopped {
            return Some(FinishReason::StopString);
        }
        if gone {
            return Some(FinishReason::Cancelled);
        }
        if a.completion >= a.params.max_tokens {
            return Some(FinishReason::Length);
        }
        if slot.cached.len() + 1 > n_ctx_slot {
            return Some(FinishReason::ContextFull);
        }
        a.next = Some(token.0);
        None
    }

    fn finish(&mut self, si: usize, result: Result<FinishReason>) {
        let Some(a) = self.slots[si].active.take() else {
            return;
        };
        // Tokens queued but never decoded are not in the KV cache.
        let events = a.events.clone();
        let stopped = matches!(result, Ok(FinishReason::StopString));
        let text = a.stream.finish(
            &mut |t| {
                let _ = events.send(Event::Text(t.to_string()));
            },
            stopped,
        );
        if matches!(result, Ok(FinishReason::Cancelled)) {
            self.stats.cancelled.fetch_add(1, Ordering::Relaxed);
        }
        let done = result.map(|finish| {
            let t_first = a.t_first.unwrap_or_else(Instant::now);
            let prompt_ms = t_first.duration_since(a.t0).as_secs_f64() * 1e3;
            let decode_ms = t_first.elapsed().as_secs_f64() * 1e3;
            let evaluated = a.prompt_len - a.cached;
            Generation {
                text,
                finish_reason: finish,
                prompt_tokens: a.prompt_len,
                cached_tokens: a.cached,
                completion_tokens: a.completion,
                prompt_ms,
                decode_ms,
                prompt_tok_per_s: evaluated as f64 / (prompt_ms / 1e3).max(1e-9),
                decode_tok_per_s: a.completion as f64 / (decode_ms / 1e3).max(1e-9),
                queued_ms: a.queued_ms,
            }
        });
        let _ = a.events.send(Event::Done(done));
    }
}
