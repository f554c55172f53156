//! Where a model's tensors come from: a random initialiser, a checkpoint, or nothing at all when
//! only the model's description is wanted. Each module asks for its own tensors by their short
//! names under its prefix (`w.pp("self_attn").pp("q_proj")`, as candle's `VarBuilder`), so the
//! HF tensor names, the shapes and the parameter counts all follow from the modules' one
//! description in [`crate::model`].

use burn::module::{Param, ParamId};
use burn::tensor::{Device, Tensor, TensorData};
use std::convert::Infallible;
use std::fmt::Display;

/// Values of the tensor with this HF name and shape (row-major f32).
pub type Source<'a, E> = dyn FnMut(&str, &[usize]) -> Result<Vec<f32>, E> + 'a;

/// A prefixed view of a tensor source.
pub struct Weights<'s, 'a, E> {
    prefix: String,
    device: Device,
    /// `None` describes the model: parameters know their shapes but hold no values.
    source: Option<&'s mut Source<'a, E>>,
}

impl<'s, 'a, E> Weights<'s, 'a, E> {
    /// Tensors from `source`, created on `device`.
    pub fn new(source: &'s mut Source<'a, E>, device: &Device) -> Self {
        Weights {
            prefix: String::new(),
            device: device.clone(),
            source: Some(source),
        }
    }

    /// The view one level down: `pp("mlp")` under `model.layers.3` names `model.layers.3.mlp.*`.
    pub fn pp(&mut self, name: impl Display) -> Weights<'_, 'a, E> {
        Weights {
            prefix: self.full_name(name),
            device: self.device.clone(),
            source: self.source.as_deref_mut(),
        }
    }

    /// The parameter `name` under this prefix, of `shape`.
    pub fn param<const D: usize>(
        &mut self,
        name: &str,
        shape: [usize; D],
    ) -> Result<Param<Tensor<D>>, E> {
        let full = self.full_name(name);
        match self.source.as_mut() {
            Some(source) => {
                let values = source(&full, &shape)?;
                Ok(Param::from_data(
                    TensorData::new(values, shape),
                    &self.device,
                ))
            }
            // A lazy parameter: its shape is known without allocating its values, which are
            // never read (describing a 2B model costs nothing).
            None => Ok(Param::uninitialized(
                ParamId::new(),
                move |device, _| Tensor::zeros(shape, device),
                self.device.clone(),
                true,
                shape.into(),
            )),
        }
    }
}

impl<E> Weights<'_, '_, E> {
    /// `name` under this prefix, dotted.
    fn full_name(&self, name: impl Display) -> String {
        match self.prefix.is_empty() {
            true => name.to_string(),
            false => format!("{}.{name}", self.prefix),
        }
    }
}

impl Weights<'static, 'static, Infallible> {
    /// A source of shapes alone, for names, shapes and counts.
    pub fn describe() -> Self {
        Weights {
            prefix: String::new(),
            device: Device::default(),
            source: None,
        }
    }
}
