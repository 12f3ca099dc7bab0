// live.js placeholder
