import{a}from"./chunk-BLHV747N.js";import"./chunk-L425MHCD.js";import"./chunk-HIIKZZ7J.js";import"./chunk-FFUQXNCW.js";export{a as rememberDevice};
