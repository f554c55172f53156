//! Walking a module's parameters by their HF names: the dotted module path of every parameter is
//! its HF tensor name (`model.layers.3.self_attn.q_proj.weight`), because the modules' field
//! names are HF's. One walker for reading ([`visit_named`]) and one for rebuilding
//! ([`map_named`]) serve the loader, the saver, the optimizer and the training step.

use crate::safetensors_io::F32Tensor;
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::Tensor;

/// Sees each float parameter with its HF name.
pub trait NamedVisitor {
    fn visit<const D: usize>(&mut self, name: &str, param: &Param<Tensor<D>>);
}

/// The dotted path of the module being walked. An enum module's variant (the feed-forward's
/// `Dense` or `Moe`) adds no level: HF names both kinds `mlp.*`.
#[derive(Default)]
struct ModulePath(Vec<Option<String>>);

impl ModulePath {
    fn enter(&mut self, name: &str, container_type: &str) {
        let variant = container_type.starts_with("Enum:");
        self.0.push((!variant).then(|| name.to_string()));
    }

    fn exit(&mut self) {
        self.0.pop();
    }

    fn name(&self) -> String {
        let parts: Vec<&str> = self.0.iter().flatten().map(String::as_str).collect();
        parts.join(".")
    }
}

/// Calls `visitor` for every float parameter of `module`, in module order.
pub fn visit_named<M: Module>(module: &M, visitor: &mut impl NamedVisitor) {
    struct Path<'v, V> {
        path: ModulePath,
        visitor: &'v mut V,
    }
    impl<V: NamedVisitor> ModuleVisitor for Path<'_, V> {
        fn enter_module(&mut self, name: &str, container_type: &str) {
            self.path.enter(name, container_type);
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.exit();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.visitor.visit(&self.path.name(), param);
        }
    }
    module.visit(&mut Path {
        path: ModulePath::default(),
        visitor,
    });
}

/// Every parameter as (HF name, shape), without reading values: lazy parameters stay lazy.
pub fn named_shapes<M: Module>(module: &M) -> Vec<(String, Vec<usize>)> {
    struct Shapes(Vec<(String, Vec<usize>)>);
    impl NamedVisitor for Shapes {
        fn visit<const D: usize>(&mut self, name: &str, param: &Param<Tensor<D>>) {
            self.0.push((name.to_string(), param.lazy_shape().to_vec()));
        }
    }
    let mut shapes = Shapes(vec![]);
    visit_named(module, &mut shapes);
    shapes.0
}

/// Every parameter as (HF name, shape, f32 values), in module order.
pub fn named_tensors<M: Module>(module: &M) -> Vec<F32Tensor> {
    struct Collect(Vec<F32Tensor>);
    impl NamedVisitor for Collect {
        fn visit<const D: usize>(&mut self, name: &str, param: &Param<Tensor<D>>) {
            let t = param.val();
            let shape = t.dims().to_vec();
            let data = t
                .into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .expect("f32 data");
            self.0.push(F32Tensor {
                name: name.to_string(),
                shape,
                data,
            });
        }
    }
    let mut c = Collect(vec![]);
    visit_named(module, &mut c);
    c.0
}

/// Rebuilds each float parameter with its HF name.
pub trait NamedMapper {
    fn map<const D: usize>(&mut self, name: &str, param: Param<Tensor<D>>) -> Param<Tensor<D>>;
}

/// Maps every float parameter of `module` through `mapper`, in module order.
pub fn map_named<M: Module>(module: M, mapper: &mut impl NamedMapper) -> M {
    struct Path<'m, T> {
        path: ModulePath,
        mapper: &'m mut T,
    }
    impl<T: NamedMapper> ModuleMapper for Path<'_, T> {
        fn enter_module(&mut self, name: &str, container_type: &str) {
            self.path.enter(name, container_type);
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.exit();
        }
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            self.mapper.map(&self.path.name(), param)
        }
    }
    module.map(&mut Path {
        path: ModulePath::default(),
        mapper,
    })
}
