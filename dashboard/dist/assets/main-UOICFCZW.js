import{a}from"./chunk-4EOGM4PU.js";import"./chunk-7XXTHKD3.js";import"./chunk-UICGVJDT.js";import"./chunk-CT2UX4KZ.js";export{a as rememberDevice};
