use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::Duration;

/// Manages a collection of threads.
///
/// A task goes to an idle thread when there is one, else to a new thread. A thread that has been
/// idle for a few seconds ends.
///
/// face-attendance patch: upstream counted idle threads outside the queue's lock, so a burst of
/// tasks (connections) could be queued behind threads that were busy for good (a connection
/// lasts as long as its client), and those connections were never read, not even to time them
/// out. Idle threads are now counted under the lock, and a task is queued only for a thread that
/// is idle and not yet promised to an earlier task.
pub struct TaskPool {
    sharing: Arc<Sharing>,
}

type Task = Box<dyn FnMut() + Send>;

struct Sharing {
    state: Mutex<State>,
    // notified whenever a task is queued, or the pool closes
    condvar: Condvar,
}

#[derive(Default)]
struct State {
    todo: VecDeque<Task>,
    // threads waiting for a task
    idle: usize,
    closing: bool,
}

/// How long a thread waits for a next task before it ends.
const IDLE_LIFETIME: Duration = Duration::from_secs(5);

/// face-attendance patch: the stack of a connection thread. It only reads request heads and
/// writes short error answers; the application handles requests on threads of its own. The
/// server's connection caps (`Limits`) bound how many of these threads there are.
const STACK_SIZE: usize = 256 * 1024;

impl Sharing {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The queue stays whole if a task panicked while another thread held the lock.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl TaskPool {
    pub fn new() -> TaskPool {
        TaskPool {
            sharing: Arc::new(Sharing {
                state: Mutex::default(),
                condvar: Condvar::new(),
            }),
        }
    }

    /// Executes a function in a thread: an idle one, or a new one.
    pub fn spawn(&self, code: Task) {
        let mut state = self.sharing.lock();
        if state.idle > state.todo.len() {
            state.todo.push_back(code);
            drop(state);
            self.sharing.condvar.notify_one();
        } else {
            drop(state);
            self.add_thread(code);
        }
    }

    fn add_thread(&self, mut first: Task) {
        let sharing = self.sharing.clone();
        // face-attendance patch: a small stack, and no panic (which took the accept thread, so
        // the whole server, down) when no thread can be started: the task, and so the
        // connection it was given, is dropped instead.
        let spawned = thread::Builder::new()
            .name("tiny-http-conn".into())
            .stack_size(STACK_SIZE)
            .spawn(move || {
                first();
                while let Some(mut task) = next_task(&sharing) {
                    task();
                }
            });
        if let Err(e) = spawned {
            log::error!("Could not start a connection thread: {}", e);
        }
    }
}

/// The next task for an idle thread, or `None` when it has waited long enough or the pool closes.
fn next_task(sharing: &Sharing) -> Option<Task> {
    let mut state = sharing.lock();
    loop {
        if let Some(task) = state.todo.pop_front() {
            return Some(task);
        }
        if state.closing {
            return None;
        }
        state.idle += 1;
        let (guard, waited) = sharing
            .condvar
            .wait_timeout(state, IDLE_LIFETIME)
            .unwrap_or_else(PoisonError::into_inner);
        state = guard;
        state.idle -= 1;
        if waited.timed_out() && state.todo.is_empty() {
            return None;
        }
    }
}

impl Drop for TaskPool {
    fn drop(&mut self) {
        self.sharing.lock().closing = true;
        self.sharing.condvar.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// A burst of tasks that each block never waits behind one another (upstream queued some of
    /// them behind busy threads).
    #[test]
    fn a_burst_of_blocking_tasks_all_start_at_once() {
        let pool = TaskPool::new();
        let (started, starts) = mpsc::channel();
        let (release, released) = mpsc::channel::<()>();
        let released = Arc::new(Mutex::new(released));
        for round in 0..3 {
            for _ in 0..20 {
                let (started, released) = (started.clone(), released.clone());
                pool.spawn(Box::new(move || {
                    started.send(()).unwrap();
                    let _ = released.lock().unwrap().recv();
                }));
            }
            for i in 0..20 {
                starts
                    .recv_timeout(Duration::from_secs(5))
                    .unwrap_or_else(|_| panic!("round {round}: task {i} never started"));
            }
            // Let them end: their threads are idle for the next round.
            for _ in 0..20 {
                release.send(()).unwrap();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
