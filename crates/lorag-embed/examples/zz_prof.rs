use candle_core::{Device, Tensor, D};
use std::time::Instant;
fn time<F: FnMut()>(name: &str, mut f: F) {
    f();
    let t = Instant::now();
    let reps = 5;
    for _ in 0..reps {
        f();
    }
    println!(
        "{name}: {:.2} ms",
        t.elapsed().as_secs_f64() / reps as f64 * 1e3
    );
}
fn main() {
    let dev = Device::Cpu;
    let (b, l, h, nh) = (32usize, 130usize, 384usize, 12usize);
    let x = Tensor::randn(0f32, 1., (b, l, h), &dev).unwrap();
    let w = Tensor::randn(0f32, 1., (h, h), &dev).unwrap();
    let w3 = Tensor::randn(0f32, 1., (3 * h, h), &dev).unwrap();
    let wi = Tensor::randn(0f32, 1., (4 * h, h), &dev).unwrap();
    let bias = Tensor::randn(0f32, 1., h, &dev).unwrap();
    let inter = Tensor::randn(0f32, 1., (b, l, 4 * h), &dev).unwrap();
    let scores = Tensor::randn(0f32, 1., (b, nh, l, l), &dev).unwrap();
    let mask = Tensor::zeros((b, 1, 1, l), candle_core::DType::F32, &dev).unwrap();
    let q = Tensor::randn(0f32, 1., (b, nh, l, h / nh), &dev).unwrap();
    let lin = candle_nn::Linear::new(w.clone(), Some(bias.clone()));
    use candle_nn::Module;
    time("linear 384->384 (with bias)", || {
        lin.forward(&x).unwrap();
    });
    time("matmul only 384->384", || {
        x.reshape((b * l, h))
            .unwrap()
            .matmul(&w.t().unwrap())
            .unwrap();
    });
    time("matmul 384->1152 (fused qkv)", || {
        x.reshape((b * l, h))
            .unwrap()
            .matmul(&w3.t().unwrap())
            .unwrap();
    });
    time("matmul 384->1536", || {
        x.reshape((b * l, h))
            .unwrap()
            .matmul(&wi.t().unwrap())
            .unwrap();
    });
    time("bias broadcast_add (b,l,384)", || {
        x.broadcast_add(&bias).unwrap();
    });
    time("gelu_erf (b,l,1536)", || {
        inter.gelu_erf().unwrap();
    });
    time("gelu tanh (b,l,1536)", || {
        inter.gelu().unwrap();
    });
    time("transpose_for_scores copy", || {
        x.reshape((b, l, nh, h / nh))
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .contiguous()
            .unwrap();
    });
    time("q k^T", || {
        q.matmul(&q.t().unwrap()).unwrap();
    });
    time("scores / 8", || {
        (&scores / 8.0).unwrap();
    });
    time("scores + mask (broadcast)", || {
        scores.broadcast_add(&mask).unwrap();
    });
    time("softmax generic", || {
        candle_nn::ops::softmax(&scores, D::Minus1).unwrap();
    });
    time("softmax_last_dim", || {
        candle_nn::ops::softmax_last_dim(&scores).unwrap();
    });
    time("p v", || {
        scores.matmul(&q).unwrap();
    });
    let ln_w = Tensor::ones(h, candle_core::DType::F32, &dev).unwrap();
    let ln = candle_nn::LayerNorm::new(ln_w, bias.clone(), 1e-12);
    time("layer_norm", || {
        ln.forward(&x).unwrap();
    });
    time("add residual", || {
        (&x + &x).unwrap();
    });
}
