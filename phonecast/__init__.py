"""手机喊话: village cadres broadcast a recording from their phone (the desk behind the line, and its records)."""
