// The microphone's audio as 16-bit mono PCM at the server's rate, in frames, for asr-serve's page.
//
// Runs in the AudioWorklet (the audio thread): the input's channels are averaged, resampled from the context's
// rate (whatever the device gives: 44.1 or 48 kHz, read from `sampleRate`, never assumed) to `targetRate` by
// windowed-sinc interpolation, and posted to the page in frames of `frameSamples` Int16 samples. The page sends
// "flush" before it ends a stream: the samples of the last, partial frame are posted, then "flushed".
"use strict";

// Zero crossings of the interpolation kernel on each side, in output samples: 16 keep aliasing under about
// -60 dB with the Blackman window, at about 1 ms of delay.
const HALF_TAPS = 16;
// The low-pass cutoff as a share of the lower rate's Nyquist frequency (the band kept: 0-7.6 kHz at 16 kHz).
const CUTOFF = 0.95;
const INT16_MAX = 32767;

class PcmCapture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const { targetRate, frameSamples } = options.processorOptions;
    this.step = sampleRate / targetRate; // input samples per output sample
    const nyquist = Math.min(sampleRate, targetRate) / 2;
    this.band = (2 * CUTOFF * nyquist) / sampleRate; // the cutoff in cycles per input sample, times 2
    this.reach = Math.ceil(HALF_TAPS * Math.max(this.step, 1)); // input samples each side of an output
    this.history = new Float32Array(0); // input samples not yet fully used; history[0] is input number `base`
    this.base = 0;
    this.next = 0; // the input position of the next output sample
    this.frame = new Int16Array(frameSamples);
    this.filled = 0;
    this.port.onmessage = (event) => {
      if (event.data === "flush") {
        this.post(this.filled);
        this.port.postMessage("flushed");
      }
    };
  }

  kernel(distance) {
    // The Blackman-windowed sinc low-pass at `band`, `distance` input samples from its centre.
    if (Math.abs(distance) >= this.reach) return 0;
    const x = this.band * distance;
    const sinc = x === 0 ? 1 : Math.sin(Math.PI * x) / (Math.PI * x);
    const phase = (Math.PI * (distance + this.reach)) / this.reach;
    const window = 0.42 - 0.5 * Math.cos(phase) + 0.08 * Math.cos(2 * phase);
    return this.band * sinc * window;
  }

  post(count) {
    if (count > 0) {
      const frame = this.frame.slice(0, count);
      this.port.postMessage(frame.buffer, [frame.buffer]);
    }
    this.filled = 0;
  }

  process(inputs) {
    const input = inputs[0];
    if (!input || input.length === 0) return true; // no device yet: keep running
    const length = input[0].length;
    const mono = new Float32Array(length);
    for (const channel of input) for (let i = 0; i < length; i++) mono[i] += channel[i] / input.length;
    const joined = new Float32Array(this.history.length + length);
    joined.set(this.history);
    joined.set(mono, this.history.length);
    const end = this.base + joined.length; // input samples received so far
    // An output sample needs the inputs up to `reach` after its position.
    while (this.next + this.reach < end) {
      const centre = Math.floor(this.next);
      let sum = 0;
      let weights = 0;
      for (let k = centre - this.reach + 1; k <= centre + this.reach; k++) {
        const w = this.kernel(this.next - k);
        const index = k - this.base;
        if (index >= 0) sum += w * joined[index]; // before the first sample: silence
        weights += w;
      }
      const value = Math.max(-1, Math.min(1, weights ? sum / weights : 0));
      this.frame[this.filled++] = Math.round(value * INT16_MAX);
      if (this.filled === this.frame.length) this.post(this.filled);
      this.next += this.step;
    }
    const keep = Math.max(0, Math.floor(this.next) - this.reach + 1 - this.base);
    this.history = joined.slice(keep);
    this.base += keep;
    return true;
  }
}

registerProcessor("pcm-capture", PcmCapture);
