//! Core data types of lara: the [`Series`] (a T×m `f32` matrix with names, timestamps, labels
//! and a training prefix), CSV readers, scalers fitted on the training prefix, sliding windows
//! and the TSB-AD period estimate.

pub mod error;
pub mod period;
pub mod reader;
pub mod scale;
pub mod series;
pub mod window;
pub mod write;

pub use error::{CoreError, Location};
pub use period::{acf, find_length_rank, DEFAULT_PERIOD};
pub use reader::{
    read_csv, read_csv_bytes, read_scores, read_scores_bytes, train_end_from_file_name, CsvOptions, MissingPolicy,
};
pub use scale::{Scaler, ScalerKind};
pub use series::Series;
pub use window::{WindowIter, Windows};
pub use write::write_atomic;
