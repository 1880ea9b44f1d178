import{a}from"./chunk-H3AO5JRI.js";import"./chunk-L425MHCD.js";import"./chunk-HIIKZZ7J.js";import"./chunk-FFUQXNCW.js";export{a as rememberDevice};
