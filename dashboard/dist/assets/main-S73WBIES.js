import{a}from"./chunk-YZM4YHKV.js";import"./chunk-ERZ2TMYJ.js";import"./chunk-UICGVJDT.js";import"./chunk-CT2UX4KZ.js";export{a as rememberDevice};
