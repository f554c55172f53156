//! Turning the files inside each package into plain document text. Every function here is pure
//! (text in, text out) so it can be tested on small inline samples without any download.

pub mod brown;
pub mod html;
pub mod idiom;
pub mod markdown;
pub mod osis;
pub mod pod;
pub mod poetry;
pub mod rst;
pub mod sotu;
pub mod text;
pub mod wordnet;

/// A question and its answer, both as plain text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QaPair {
    pub question: String,
    pub answer: String,
}
