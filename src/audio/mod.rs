//! Audio toolkit: PCM helpers, G.711 mu-law, resampling, Opus and WAV.
